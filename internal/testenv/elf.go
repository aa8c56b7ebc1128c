package testenv

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/bottle-apply/bottle-apply/internal/bundlebin"
)

// goArch names an ELF machine as Go does.
var goArch = map[elf.Machine]string{elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64", elf.EM_RISCV: "riscv64"}

// FakeBundleBuilds writes, in a directory of their own, a bottle-bundle
// build for each machine, named as a release ships them: an ELF header,
// nothing that runs, so that images of them are small and quick to push.
func FakeBundleBuilds(t testing.TB, machines ...elf.Machine) bundlebin.Dir {
	t.Helper()
	dir := t.TempDir()
	for _, m := range machines {
		data, err := os.ReadFile(WriteELF(t, m, false))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, bundlebin.Name(goArch[m])), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return bundlebin.Dir(dir)
}

// WriteELF writes a minimal 64-bit little-endian ELF executable header for
// machine, dynamically linked (a PT_INTERP) or not, and returns its path:
// enough for code that inspects executables, nothing that runs.
func WriteELF(t testing.TB, machine elf.Machine, dynamic bool) string {
	t.Helper()
	h := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(machine), Version: uint32(elf.EV_CURRENT),
		Ehsize: 64, Phentsize: 56,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	var buf bytes.Buffer
	interp := []byte("/lib64/ld-linux-x86-64.so.2\x00")
	if dynamic {
		h.Phoff, h.Phnum = 64, 1
	}
	if err := binary.Write(&buf, binary.LittleEndian, h); err != nil {
		t.Fatal(err)
	}
	if dynamic {
		p := elf.Prog64{Type: uint32(elf.PT_INTERP), Flags: uint32(elf.PF_R), Off: 64 + 56,
			Filesz: uint64(len(interp)), Memsz: uint64(len(interp)), Align: 1}
		if err := binary.Write(&buf, binary.LittleEndian, p); err != nil {
			t.Fatal(err)
		}
		buf.Write(interp)
	}
	path := filepath.Join(t.TempDir(), "bottle-apply")
	if err := os.WriteFile(path, buf.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}
