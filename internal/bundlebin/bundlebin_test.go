package bundlebin_test

import (
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/internal/bundlebin"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// place copies the file src to dir/name.
func place(t *testing.T, src, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	amd := place(t, testenv.WriteELF(t, elf.EM_X86_64, false), dir, "bottle-bundle-linux-amd64")
	place(t, testenv.WriteELF(t, elf.EM_X86_64, false), dir, "bottle-bundle-linux-arm64") // misnamed
	place(t, testenv.WriteELF(t, elf.EM_RISCV, true), dir, "bottle-bundle-linux-riscv64")
	if err := os.WriteFile(filepath.Join(dir, "bottle-bundle-linux-mips"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	d := bundlebin.Dir(dir)
	tests := []struct {
		arch, want, wantErr string
		wantNoBuild         bool
	}{
		{arch: "amd64", want: amd},
		{arch: "arm64", wantErr: "bottle-bundle-linux-arm64 is for EM_X86_64, not linux/arm64"},
		{arch: "riscv64", wantErr: "is dynamically linked"},
		{arch: "mips", wantErr: "is not an ELF executable"},
		{arch: "s390x", wantErr: "no bottle-bundle build for linux/s390x: there is no bottle-bundle-linux-s390x in " + dir, wantNoBuild: true},
	}
	for _, tt := range tests {
		got, err := d.Path(tt.arch)
		if tt.wantErr == "" {
			if err != nil || got != tt.want {
				t.Errorf("Path(%s) = %q, %v; want %q", tt.arch, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Path(%s) error = %v, want it to contain %q", tt.arch, err, tt.wantErr)
		}
		if errors.Is(err, bundlebin.ErrNoBuild) != tt.wantNoBuild {
			t.Errorf("Path(%s) error %v: ErrNoBuild is %v, want %v", tt.arch, err, !tt.wantNoBuild, tt.wantNoBuild)
		}
	}
}

func TestAll(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, name := range []string{"bottle-bundle-linux-arm64", "bottle-bundle-linux-amd64", "bottle-apply", "bottle-bundle",
		"bottle-bundle-linux-amd64.sha256", "bottle-bundle-linux-"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "bottle-bundle-linux-386"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := bundlebin.Dir(dir).All()
	want := []string{filepath.Join(dir, "bottle-bundle-linux-amd64"), filepath.Join(dir, "bottle-bundle-linux-arm64")}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("All() = %q, %v; want %q", got, err, want)
	}
	if got, err := bundlebin.Dir(t.TempDir()).All(); err != nil || len(got) != 0 {
		t.Errorf("All() of an empty directory = %q, %v", got, err)
	}
}

// A bottle-apply reached through a symbolic link finds the builds beside
// the file it links to.
func TestBesideFollowsLinks(t *testing.T) {
	t.Parallel()
	release, bin := t.TempDir(), t.TempDir()
	exe := filepath.Join(release, "bottle-apply")
	if err := os.WriteFile(exe, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(bin, "bottle-apply")
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	d, err := bundlebin.Beside(link)
	want, _ := filepath.EvalSymlinks(release)
	if err != nil || string(d) != want {
		t.Errorf("Beside(%s) = %q, %v; want %q", link, d, err, want)
	}
}
