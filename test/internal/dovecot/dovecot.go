// Package dovecot runs a private Dovecot 2.3 on loopback for the programs
// under test/ that need a real IMAP server behind the rimap mechanism (the
// benchmark, the soak): its own configuration, base and state directories
// and log in a directory of the caller's, a passwd-file passdb, a throw-away
// CA, one plaintext-with-STARTTLS port on 127.0.0.1, no authentication
// penalty, and Dovecot's high-performance mode (login processes serve many
// connections, imap processes are reused). The soak also
// stops, stalls, kills and restarts it on the same port.
package dovecot

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Server is one private Dovecot.
type Server struct {
	// Dir holds the configuration, the passwd file, the certificates and
	// dovecot.log.
	Dir string
	// Port is the IMAP port on 127.0.0.1 (plaintext, STARTTLS offered).
	Port int
	// CAFile is the PEM of the CA that signed Dovecot's certificate for
	// 127.0.0.1.
	CAFile string

	conf string
	cmd  *exec.Cmd
	done chan struct{}
}

// Bounds on waiting for Dovecot.
const (
	startWait = 15 * time.Second
	termWait  = 3 * time.Second
	groupWait = 5 * time.Second
)

// Start writes the configuration into dir (created, and made traversable
// for Dovecot's unprivileged auth process) with users (login: password) in
// its passwd file, and starts Dovecot. It needs root and the dovecot
// binary.
func Start(dir string, users map[string]string) (*Server, error) {
	s := &Server{Dir: dir, CAFile: filepath.Join(dir, "ca.pem"), conf: filepath.Join(dir, "dovecot.conf")}
	for _, sub := range []string{"", "run", "state", "home"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("dovecot: %w", err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("dovecot: %w", err)
	}
	var err error
	if s.Port, err = freePort(); err != nil {
		return nil, err
	}
	if err := writeCA(dir); err != nil {
		return nil, err
	}
	var pw strings.Builder
	for _, u := range slices.Sorted(maps.Keys(users)) {
		if strings.ContainsAny(u+users[u], ":\n") {
			return nil, fmt.Errorf("dovecot: user %q: ':' or a newline cannot be written to a passwd-file", u)
		}
		fmt.Fprintf(&pw, "%s:{PLAIN}%s\n", u, users[u])
	}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(pw.String()), 0o644); err != nil {
		return nil, fmt.Errorf("dovecot: %w", err)
	}
	if err := os.WriteFile(s.conf, []byte(config(dir, s.Port)), 0o644); err != nil {
		return nil, fmt.Errorf("dovecot: %w", err)
	}
	if err := s.Restart(); err != nil {
		return nil, err
	}
	return s, nil
}

func config(dir string, port int) string {
	return fmt.Sprintf(`# saslgate test/internal/dovecot: private instance, loopback only
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <%[1]s/cert.pem
ssl_key = <%[1]s/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain
auth_failure_delay = 0
auth_verbose = yes
login_trusted_networks = 127.0.0.0/8
# one user logs in from one address at a high rate; the default cap of 10
# sessions per user and address turns a session whose LOGOUT is still in
# flight into a refused LOGIN
mail_max_userip_connections = 100000
passdb {
  driver = passwd-file
  args = %[1]s/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=%[1]s/home/%%u
}
mail_location = mbox:~/mail
# no auth penalty: one failure would delay the next logins by seconds
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
# high-performance mode: login processes serve many connections and imap
# processes are reused, so a login is not a process spawn; an imap process
# serves one client at a time (mbox refuses client_limit above 1: every
# session would fail right after its LOGIN)
service imap {
  service_count = 0
  client_limit = 1
  process_min_avail = 2
}
service imap-login {
  service_count = 0
  client_limit = 1024
  process_min_avail = 2
  inet_listener imap {
    address = 127.0.0.1
    port = %[2]d
  }
  inet_listener imaps {
    port = 0
  }
}
`, dir, port)
}

// Option is rimap's -O value for this server.
func (s *Server) Option() string { return "127.0.0.1/" + strconv.Itoa(s.Port) }

// Running reports whether the master process is alive.
func (s *Server) Running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Restart starts Dovecot (again, after Stop or Kill) on the same port and
// waits until it accepts connections.
func (s *Server) Restart() error {
	if s.Running() {
		return errors.New("dovecot: already running")
	}
	cmd := exec.Command("dovecot", "-F", "-c", s.conf)
	// its own process group: Stop, Kill and Signal reach every process
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dovecot: %w", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(s.done)
	deadline := time.Now().Add(startWait)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.Port), time.Second); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("dovecot: exited at start (%s): %s", cmd.ProcessState, s.logTail())
		default:
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Kill()
	return fmt.Errorf("dovecot: did not listen within %s: %s", startWait, s.logTail())
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "dovecot.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Signal sends sig to every Dovecot process (SIGSTOP, SIGCONT).
func (s *Server) Signal(sig syscall.Signal) error {
	if !s.Running() {
		return errors.New("dovecot: not running")
	}
	if err := syscall.Kill(-s.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("dovecot: kill %s: %w", sig, err)
	}
	return nil
}

// Stop asks Dovecot to stop (SIGTERM) and kills what is left after a few
// seconds: it would wait up to ten for login processes that still hold
// clients.
func (s *Server) Stop() { s.end(syscall.SIGTERM) }

// Kill ends every Dovecot process at once, as a crash would.
func (s *Server) Kill() { s.end(syscall.SIGKILL) }

func (s *Server) end(sig syscall.Signal) {
	if s.cmd == nil {
		return
	}
	pgid := s.cmd.Process.Pid
	if sig == syscall.SIGKILL {
		_ = syscall.Kill(-pgid, sig)
	} else {
		_ = s.cmd.Process.Signal(sig)
	}
	_ = syscall.Kill(-pgid, syscall.SIGCONT) // a stalled group cannot act on the signal
	select {
	case <-s.done:
	case <-time.After(termWait):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-s.done
	}
	// Login processes may outlive the master for a moment, holding the
	// port; the group stays ours while any member lives.
	deadline := time.Now().Add(groupWait)
	for syscall.Kill(-pgid, 0) == nil && time.Now().Before(deadline) {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		time.Sleep(20 * time.Millisecond)
	}
	s.cmd = nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("dovecot: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// writeCA writes a throw-away CA (ca.pem) and a key and certificate for
// 127.0.0.1 it signs (key.pem, cert.pem).
func writeCA(dir string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("dovecot: %w", err)
	}
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "saslgate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caT, caT, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("dovecot: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fmt.Errorf("dovecot: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("dovecot: %w", err)
	}
	t := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, t, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("dovecot: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("dovecot: %w", err)
	}
	for name, b := range map[string]*pem.Block{
		"ca.pem": {Type: "CERTIFICATE", Bytes: caDER}, "cert.pem": {Type: "CERTIFICATE", Bytes: der},
		"key.pem": {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(b), 0o600); err != nil {
			return fmt.Errorf("dovecot: %w", err)
		}
	}
	return nil
}
