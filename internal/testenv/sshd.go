package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SSHD is an sshd on 127.0.0.1 that the test started, in front of the
// local engine: ssh://root@127.0.0.1:PORT runs `docker system dial-stdio`
// on this machine, as an ssh:// DOCKER_HOST does on a remote one. Its host
// key and the user's keys are made for the test; the ssh it gives reads
// nothing of ~/.ssh.
type SSHD struct {
	// Port is where root logs in with the test's key and finds the docker
	// CLI.
	Port int
	// NoDockerPort is where the sessions' PATH holds no docker CLI.
	NoDockerPort int
	// Socket is the engine's unix socket, which the ssh:// address names
	// when it is not the default one.
	Socket string
	// Bin is a directory holding an `ssh` that logs in with the test's key
	// and knows the test's host key only; put it first on PATH.
	Bin string
	// BadKeyBin is the same with a key that sshd does not accept.
	BadKeyBin string

	dir string
	cmd *exec.Cmd
	log *syncBuffer
}

// StartSSHD starts an sshd (Debian's openssh-server) for the engine whose
// unix socket is socket, and stops it when the test ends. It needs root,
// sshd, ssh and ssh-keygen: without them it skips the test, unless CI is
// set, where it fails.
func StartSSHD(t testing.TB, socket string) *SSHD {
	t.Helper()
	missing := func(why string) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set but %s", why)
		}
		t.Skip(why)
	}
	if os.Geteuid() != 0 {
		missing("an sshd that logs root in needs root")
	}
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/sshd"); err2 != nil {
			missing("no sshd (apt-get install openssh-server)")
		}
		sshd = "/usr/sbin/sshd"
	}
	ssh, err := exec.LookPath("ssh")
	if err != nil {
		missing("no ssh (apt-get install openssh-client)")
	}
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		missing("no ssh-keygen (apt-get install openssh-client)")
	}
	// sshd wants its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	for _, k := range []string{"host_key", "user_key", "bad_key"} {
		keygen(t, filepath.Join(dir, k))
	}
	userPub, err := os.ReadFile(filepath.Join(dir, "user_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "authorized_keys"), string(userPub), 0o600)
	hostPub, err := os.ReadFile(filepath.Join(dir, "host_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	hostKey := strings.Join(strings.Fields(string(hostPub))[:2], " ")

	s := &SSHD{Socket: socket, dir: dir}
	for attempt := 1; ; attempt++ {
		s.Port, s.NoDockerPort = freePort(t), freePort(t)
		if s.Port == s.NoDockerPort {
			continue
		}
		write(t, filepath.Join(dir, "sshd_config"), fmt.Sprintf(`ListenAddress 127.0.0.1:%d
ListenAddress 127.0.0.1:%d
HostKey %s
AuthorizedKeysFile %s
StrictModes no
PermitRootLogin yes
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PidFile none
LogLevel VERBOSE
Match LocalPort %d
  SetEnv PATH=/nonexistent
`, s.Port, s.NoDockerPort, filepath.Join(dir, "host_key"), filepath.Join(dir, "authorized_keys"), s.NoDockerPort), 0o600)
		s.log = &syncBuffer{}
		s.cmd = exec.Command(sshd, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
		s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := s.cmd.Start(); err != nil {
			t.Fatalf("start sshd: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			// The process group: sshd and every session it forked.
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		})
		if s.listening(exited) {
			break
		}
		if attempt == 3 {
			t.Fatalf("sshd did not listen on 127.0.0.1:%d:\n%s", s.Port, s.log.String())
		}
		// A port taken between freePort and sshd's bind: again.
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sshd's log:\n%s", s.log.String())
		}
	})

	knownHosts := fmt.Sprintf("[127.0.0.1]:%d %s\n[127.0.0.1]:%d %s\n", s.Port, hostKey, s.NoDockerPort, hostKey)
	write(t, filepath.Join(dir, "known_hosts"), knownHosts, 0o600)
	s.Bin = s.sshBin(t, ssh, "user_key")
	s.BadKeyBin = s.sshBin(t, ssh, "bad_key")
	return s
}

// URL is the ssh:// DOCKER_HOST of the engine through this sshd on port,
// as user (root when empty).
func (s *SSHD) URL(user string, port int) string {
	if user == "" {
		user = "root"
	}
	u := "ssh://" + user + "@127.0.0.1:" + strconv.Itoa(port)
	if s.Socket != "" && s.Socket != "/var/run/docker.sock" {
		u += s.Socket
	}
	return u
}

// Env is what a command needs to reach the engine through this sshd with
// the ssh of bin: DOCKER_HOST and PATH.
func (s *SSHD) Env(bin string, port int) []string {
	return []string{"DOCKER_HOST=" + s.URL("", port), "PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")}
}

// sshBin writes a directory with an `ssh` that uses the key named and the
// test's known hosts, nothing of ~/.ssh, and returns it.
func (s *SSHD) sshBin(t testing.TB, ssh, key string) string {
	t.Helper()
	cfg := filepath.Join(s.dir, "ssh_config_"+key)
	write(t, cfg, fmt.Sprintf(`Host *
  IdentityFile %s
  IdentitiesOnly yes
  IdentityAgent none
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  ControlMaster no
  LogLevel ERROR
`, filepath.Join(s.dir, key), filepath.Join(s.dir, "known_hosts")), 0o600)
	bin := filepath.Join(s.dir, "bin-"+key)
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	// -F: this file and no other (neither ~/.ssh/config nor
	// /etc/ssh/ssh_config), and no ~/.ssh made.
	write(t, filepath.Join(bin, "ssh"), fmt.Sprintf("#!/bin/sh\nexec %s -F %s \"$@\"\n", ssh, cfg), 0o755)
	return bin
}

// listening waits until sshd accepts on both ports, or exits.
func (s *SSHD) listening(exited <-chan struct{}) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		ok := true
		for _, p := range []int{s.Port, s.NoDockerPort} {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(p), time.Second)
			if err != nil {
				ok = false
				break
			}
			c.Close()
		}
		if ok {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// keygen makes an ed25519 key pair at path and path.pub, with no
// passphrase.
func keygen(t testing.TB, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bottle-apply-test", "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
}

// freePort is a TCP port on 127.0.0.1 that nothing listened on a moment
// ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func write(t testing.TB, path, s string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), mode); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a bytes.Buffer that a process writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
