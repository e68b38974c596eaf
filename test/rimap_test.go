package test

// rimap against a real Dovecot 2.3 on loopback (spec §5.4, §13 cases 26,
// 32-41): the real Cyrus saslauthd 2.1.28 (-a rimap -O 127.0.0.1/PORT) and
// saslgate's rimap mechanism, served by saslgate's daemon package in the
// test process (so the comparison does not depend on which mechanisms
// mechs/all links into bin/saslgate), must give byte-identical replies for
// good, bad and unknown users, asked by saslgate's client and by the real
// testsaslauthd. When bin/saslgate links rimap, it is compared too.
//
// What saslauthd cannot do (STARTTLS, implicit TLS, certificate checks,
// the pool, a server that goes away and comes back, a host that does not
// resolve at start) is tested on the mechanism itself against the same
// Dovecot, until the daemon's command line has flags for rimap's options.
//
// Dovecot runs in the foreground (-F) from a private configuration in a
// temporary directory: its own base_dir, state_dir and log, loopback only,
// free ports for imap (plaintext and STARTTLS) and imaps, a throw-away CA
// made here, a passwd-file passdb and a static userdb. Failed logins are
// answered at once (auth_failure_delay = 0, and loopback is a trusted
// network, and the auth penalty is off); Dovecot still takes about half a
// second over each failure.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/saslgate/saslgate/daemon"
	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/rimap"
	"github.com/saslgate/saslgate/protocol"
)

// Dovecot's users. The first password holds `"` and `\`, which saslauthd
// escapes in its quoted string; the UTF-8 one is sent raw in quotes by
// saslauthd and as a literal by saslgate.
const (
	rmUser     = "alice"
	rmPass     = `pa"ss\wo rd`
	rmUTFUser  = "jürgen"
	rmUTFPass  = "pä✓ss wörd"
	rmRealmU   = "bob"
	rmRealm    = "example.org"
	rmRealmPw  = "Bob-Secret-9"
	rmDoveName = "localhost"
)

type rmDovecot struct {
	dir       string
	conf      string
	imapPort  int
	imapsPort int
	caFile    string // PEM of the CA that signed Dovecot's certificate
	otherCA   string // PEM of a CA that signed nothing Dovecot shows
	cmd       *exec.Cmd
	done      chan struct{}
}

// rmTempDir is a short temporary directory (unix socket paths must stay
// under 108 bytes) that the dovecot and dovenull users can traverse.
func rmTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "sgrm")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// rmFreePort is a loopback port nothing listens on right now.
func rmFreePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// rmMakeCA writes a CA and, when names are given, a key and certificate
// it signs for them.
func rmMakeCA(t *testing.T, dir, prefix string, names ...string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "saslgate rimap e2e CA " + prefix},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, typ string, der []byte, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(prefix+"ca.pem", "CERTIFICATE", caDER, 0o644)
	if len(names) == 0 {
		return
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write(prefix+"cert.pem", "CERTIFICATE", der, 0o644)
	write(prefix+"key.pem", "PRIVATE KEY", keyDER, 0o600)
}

// rmStartDovecot configures and starts a private Dovecot; Cleanup stops it.
func rmStartDovecot(t *testing.T) *rmDovecot {
	t.Helper()
	needRoot(t)
	need(t, "dovecot")
	d := &rmDovecot{dir: rmTempDir(t), imapPort: rmFreePort(t), imapsPort: rmFreePort(t)}
	for _, sub := range []string{"run", "state", "home"} {
		if err := os.Mkdir(filepath.Join(d.dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rmMakeCA(t, d.dir, "", "127.0.0.1", rmDoveName)
	rmMakeCA(t, d.dir, "other-")
	d.caFile = filepath.Join(d.dir, "ca.pem")
	d.otherCA = filepath.Join(d.dir, "other-ca.pem")
	passwd := fmt.Sprintf("%s:{PLAIN}%s\n%s:{PLAIN}%s\n%s@%s:{PLAIN}%s\n",
		rmUser, rmPass, rmUTFUser, rmUTFPass, rmRealmU, rmRealm, rmRealmPw)
	if err := os.WriteFile(filepath.Join(d.dir, "passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	d.configure(t, "rimap", `passdb {
  driver = passwd-file
  args = `+d.dir+`/passwd
}
auth_username_chars =
login_trusted_networks = 127.0.0.0/8
`, nil)
	return d
}

// configure writes a private Dovecot's configuration in d.dir (its run,
// state and home directories and cert.pem must exist) with the given
// passdb and extra settings, starts it, and stops it at Cleanup, printing
// its log (and onFail's) if the test failed. The rimap and checkpassword
// tests differ only in those.
func (d *rmDovecot) configure(t *testing.T, what, passdbAndExtra string, onFail func() string) {
	t.Helper()
	conf := fmt.Sprintf(`# saslgate %[4]s test: private instance, loopback only
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
%[5]s
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
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[2]d
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = %[3]d
    ssl = yes
  }
}
`, d.dir, d.imapPort, d.imapsPort, what, passdbAndExtra)
	d.conf = filepath.Join(d.dir, "dovecot.conf")
	if err := os.WriteFile(d.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	d.start(t)
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(d.dir, "dovecot.log"))
			t.Logf("dovecot.log:\n%s", log)
			if onFail != nil {
				t.Log(onFail())
			}
		}
	})
}

// start runs dovecot -F and waits for its greeting on both ports.
func (d *rmDovecot) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(need(t, "dovecot")[0], "-F", "-c", d.conf)
	out := &syncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("dovecot: %v", err)
	}
	d.cmd, d.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(d.done)
	deadline := time.Now().Add(15 * time.Second)
	for _, port := range []int{d.imapPort, d.imapsPort} {
		for {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-d.done:
				log, _ := os.ReadFile(filepath.Join(d.dir, "dovecot.log"))
				t.Fatalf("dovecot exited at start: %s\n%s\n%s", cmd.ProcessState, out.String(), log)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("dovecot never listened on %d:\n%s", port, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// stop ends Dovecot and its children, and waits until the ports are free.
func (d *rmDovecot) stop(t *testing.T) {
	if d.cmd == nil {
		return
	}
	select {
	case <-d.done:
	default:
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		// Dovecot waits up to 10 s for login processes that still have
		// clients (the pool's ready connections): no need to wait for that.
		select {
		case <-d.done:
		case <-time.After(3 * time.Second):
			_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.done
		}
	}
	// Login processes inherit the listening sockets and may outlive the
	// master for a moment; they are in its process group, which stays ours
	// while any member lives.
	pgid := d.cmd.Process.Pid
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.cmd = nil
}

func (d *rmDovecot) option() string { return "127.0.0.1/" + strconv.Itoa(d.imapPort) }

// rmGreeting reads the server's greeting, to show what a client sees.
func rmGreeting(t *testing.T, port int) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

// rmSaslgate serves the rimap mechanism on a fresh run directory through
// saslgate's daemon package, with saslauthd's log format at debug level.
func rmSaslgate(t *testing.T, opts mechs.Options, joinRealm bool) (string, *syncBuf) {
	t.Helper()
	logs := &syncBuf{}
	lh := daemon.NewLogHandler("saslauthd", false, logs, slog.LevelDebug)
	logger := slog.New(lh)
	m, err := mechs.New("rimap", opts, logger)
	if err != nil {
		t.Fatalf("mechs.New(rimap): %v", err)
	}
	srv := &daemon.Server{Logger: logger, JoinRealm: joinRealm}
	srv.SetAuth(mechs.NewChain(logger, m))
	rd, err := daemon.LockRunDir(filepath.Join(rmTempDir(t), "run"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := rd.Listen()
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = rd.Close()
		_ = m.(interface{ Close() error }).Close()
	})
	return rd.SocketPath(), logs
}

// rmCyrus starts the real saslauthd -a rimap in the foreground.
func rmCyrus(t *testing.T, option string, extra ...string) *Daemon {
	t.Helper()
	needRoot(t)
	bin := need(t, "saslauthd")[0]
	dir := filepath.Join(rmTempDir(t), "run")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-d", "-a", "rimap", "-O", option, "-m", dir}, extra...)
	return startDaemon(t, "cyrus saslauthd -a rimap", bin, "", dir, args...)
}

// rmBinaryWithRimap returns bin/saslgate (or $SASLGATE_RIMAP_BIN) when it
// was built and links rimap.
func rmBinaryWithRimap(t *testing.T) string {
	t.Helper()
	bin := filepath.Join("..", "bin", "saslgate")
	if b := os.Getenv("SASLGATE_RIMAP_BIN"); b != "" {
		bin = b
	}
	if _, err := os.Stat(bin); err != nil {
		return ""
	}
	abs, _ := filepath.Abs(bin)
	out, errOut, _ := run(t, "saslauthd", abs, "-v")
	if !strings.Contains(out+errOut, " rimap") {
		return ""
	}
	return abs
}

type rmCase struct {
	name                  string
	login, pw, svc, realm string
	want                  string // the reply, per spec
}

func rmCases() []rmCase {
	return []rmCase{
		{"32 good (password with \" and \\)", rmUser, rmPass, "imap", "", rimap.ReplyOK},
		{"33 wrong password", rmUser, "wrong", "imap", "", rimap.ReplyRejected},
		{"unknown user", "nosuchuser", "x", "smtp", "", rimap.ReplyRejected},
		{"password prefix", rmUser, rmPass[:len(rmPass)-1], "imap", "", rimap.ReplyRejected},
		{"password with the quotes unescaped", rmUser, strings.ReplaceAll(rmPass, `\`, ``), "imap", "", rimap.ReplyRejected},
		{"38 UTF-8 login and password", rmUTFUser, rmUTFPass, "imap", "", rimap.ReplyOK},
		{"UTF-8, wrong password", rmUTFUser, "pä", "imap", "", rimap.ReplyRejected},
		{"realm ignored without -r", rmUser, rmPass, "smtp", rmRealm, rimap.ReplyOK},
		{"upper-case login (Dovecot lower-cases it)", "ALICE", rmPass, "imap", "", ""},
		{"second good request", rmUser, rmPass, "smtp", "", rimap.ReplyOK},
	}
}

// TestRimapCompatDovecot: Cyrus and saslgate (with and without the pool)
// in front of the same Dovecot give the same replies.
func TestRimapCompatDovecot(t *testing.T) {
	dv := rmStartDovecot(t)
	t.Logf("dovecot greeting: %s", rmGreeting(t, dv.imapPort))
	cyrus := rmCyrus(t, dv.option())
	socks := map[string]string{"cyrus": cyrus.Socket()}
	var sgLogs []*syncBuf
	for _, pool := range []string{"0", "4"} {
		sock, logs := rmSaslgate(t, mechs.Options{Option: dv.option(), Values: map[string]string{rimap.KeyPoolSize: pool}}, false)
		socks["saslgate pool="+pool] = sock
		sgLogs = append(sgLogs, logs)
	}
	if bin := rmBinaryWithRimap(t); bin != "" {
		dir := filepath.Join(rmTempDir(t), "run")
		d := startDaemon(t, "saslgate", bin, "saslauthd", dir, "-d", "-a", "rimap", "-O", dv.option(), "-m", dir)
		socks["bin/saslgate"] = d.Socket()
	} else {
		t.Log("bin/saslgate missing or without rimap: only the in-process daemon is compared")
	}
	order := []string{"cyrus", "saslgate pool=0", "saslgate pool=4", "bin/saslgate"}

	tsa := need(t, "testsaslauthd")[0]
	for _, c := range rmCases() {
		t.Run(c.name, func(t *testing.T) {
			req := protocol.Request{Login: c.login, Password: c.pw, Service: c.svc, Realm: c.realm}
			want := ask(socks["cyrus"], req)
			if c.want != "" && want != c.want {
				t.Errorf("cyrus replied %q; the spec says %q", want, c.want)
			}
			args := []string{"-u", c.login, "-p", c.pw, "-s", c.svc}
			if c.realm != "" {
				args = append(args, "-r", c.realm)
			}
			cyOut, cyErr, cyCode := run(t, "", tsa, append([]string{"-f", socks["cyrus"]}, args...)...)
			for _, who := range order[1:] {
				sock, ok := socks[who]
				if !ok {
					continue
				}
				if got := ask(sock, req); got != want {
					t.Errorf("%s replied %q, cyrus %q", who, got, want)
				}
				out, errOut, code := run(t, "", tsa, append([]string{"-f", sock}, args...)...)
				if out != cyOut || errOut != cyErr || code != cyCode {
					t.Errorf("testsaslauthd against %s: %q %q %d; against cyrus: %q %q %d", who, out, errOut, code, cyOut, cyErr, cyCode)
				}
			}
			t.Logf("reply %q, testsaslauthd %q", want, strings.TrimSpace(cyOut))
		})
	}
	for _, l := range sgLogs {
		for _, pw := range []string{rmPass, rmUTFPass, strings.ReplaceAll(rmPass, `\`, ``)} {
			if strings.Contains(l.String(), pw) {
				t.Fatalf("saslgate logged a password:\n%s", l.String())
			}
		}
	}
}

// TestRimapCompatJoinRealm is spec §13 case 26: with -r the IMAP server
// gets login@realm.
func TestRimapCompatJoinRealm(t *testing.T) {
	dv := rmStartDovecot(t)
	cyrus := rmCyrus(t, dv.option(), "-r")
	sg, _ := rmSaslgate(t, mechs.Options{Option: dv.option()}, true)
	for _, c := range []rmCase{
		{"26 bob + realm", rmRealmU, rmRealmPw, "smtp", rmRealm, rimap.ReplyOK},
		{"bob without realm", rmRealmU, rmRealmPw, "smtp", "", rimap.ReplyRejected},
		{"alice + realm", rmUser, rmPass, "smtp", rmRealm, rimap.ReplyRejected},
	} {
		req := protocol.Request{Login: c.login, Password: c.pw, Service: c.svc, Realm: c.realm}
		cy, got := ask(cyrus.Socket(), req), ask(sg, req)
		if cy != c.want || got != cy {
			t.Errorf("%s: cyrus %q, saslgate %q, spec %q", c.name, cy, got, c.want)
		}
	}
}

// TestRimapCompatUnresolvableAtStart is spec §13 case 40: Cyrus refuses to
// start when -O does not resolve (cyrus-sasl#493); saslgate starts and
// answers "Couldn't contact" until the name resolves.
func TestRimapCompatUnresolvableAtStart(t *testing.T) {
	needRoot(t)
	bin := need(t, "saslauthd")[0]
	dir := filepath.Join(rmTempDir(t), "run")
	_, errOut, code := run(t, "", bin, "-d", "-a", "rimap", "-O", "nosuchhost.invalid", "-m", dir)
	if code == 0 {
		t.Errorf("cyrus started with an unresolvable host (exit 0): %s", errOut)
	}
	t.Logf("cyrus: exit %d: %s", code, strings.TrimSpace(errOut))
	sg, _ := rmSaslgate(t, mechs.Options{Option: "nosuchhost.invalid", Values: map[string]string{rimap.KeyConnectTimeout: "2s"}}, false)
	if got := ask(sg, protocol.Request{Login: rmUser, Password: rmPass, Service: "imap"}); got != rimap.ReplyNoContact {
		t.Fatalf("saslgate replied %q, want %q", got, rimap.ReplyNoContact)
	}
}

// rmMech builds the mechanism directly, with a debug log.
func rmMech(t *testing.T, option string, kv ...string) (*rimap.Mech, *syncBuf) {
	t.Helper()
	o := mechs.Options{Option: option, Values: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		o.Values[kv[i]] = kv[i+1]
	}
	logs := &syncBuf{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := mechs.New("rimap", o, logger)
	if err != nil {
		t.Fatal(err)
	}
	rm := m.(*rimap.Mech)
	t.Cleanup(func() { rm.Close() })
	return rm, logs
}

func rmAuth(t *testing.T, m *rimap.Mech, login, pw string) mechs.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := m.Authenticate(ctx, mechs.Request{Login: login, Password: mechs.Password(pw), Service: "imap"})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func rmWant(t *testing.T, res mechs.Result, v mechs.Verdict, reply string) {
	t.Helper()
	if res.Verdict != v || res.Reply != reply {
		t.Fatalf("got %v %q (%s), want %v %q", res.Verdict, res.Reply, res.Reason, v, reply)
	}
}

// TestRimapDovecotTLS: STARTTLS and implicit TLS against Dovecot, with the
// certificate checked, and the pool keeping handshaken connections.
func TestRimapDovecotTLS(t *testing.T) {
	dv := rmStartDovecot(t)
	imaps := "127.0.0.1/" + strconv.Itoa(dv.imapsPort)
	cases := []struct {
		name   string
		option string
		kv     []string
		v      mechs.Verdict
		reply  string
		logHas string
	}{
		{"starttls", dv.option(), []string{rimap.KeyTLS, "starttls", rimap.KeyCAFile, dv.caFile}, mechs.Accept, rimap.ReplyOK, ""},
		{"starttls by name", "localhost/" + strconv.Itoa(dv.imapPort), []string{rimap.KeyTLS, "starttls", rimap.KeyCAFile, dv.caFile}, mechs.Accept, rimap.ReplyOK, ""},
		{"implicit", imaps, []string{rimap.KeyTLS, "implicit", rimap.KeyCAFile, dv.caFile}, mechs.Accept, rimap.ReplyOK, ""},
		{"implicit, server name", imaps, []string{rimap.KeyTLS, "implicit", rimap.KeyCAFile, dv.caFile, rimap.KeyServerName, rmDoveName}, mechs.Accept, rimap.ReplyOK, ""},
		{"bad certificate (starttls)", dv.option(), []string{rimap.KeyTLS, "starttls", rimap.KeyCAFile, dv.otherCA}, mechs.TempFail, rimap.ReplyNoContact, "certificate"},
		{"bad certificate (implicit)", imaps, []string{rimap.KeyTLS, "implicit", rimap.KeyCAFile, dv.otherCA}, mechs.TempFail, rimap.ReplyNoContact, "certificate"},
		{"wrong server name", imaps, []string{rimap.KeyTLS, "implicit", rimap.KeyCAFile, dv.caFile, rimap.KeyServerName, "imap.example.org"}, mechs.TempFail, rimap.ReplyNoContact, "imap.example.org"},
		{"implicit TLS on the plaintext port", dv.option(), []string{rimap.KeyTLS, "implicit", rimap.KeyCAFile, dv.caFile}, mechs.TempFail, rimap.ReplyNoContact, ""},
	}
	for _, c := range cases {
		for _, pool := range []string{"0", "2"} {
			t.Run(c.name+" pool="+pool, func(t *testing.T) {
				m, logs := rmMech(t, c.option, append(c.kv, rimap.KeyPoolSize, pool)...)
				rmWant(t, rmAuth(t, m, rmUser, rmPass), c.v, c.reply)
				if c.v == mechs.Accept {
					rmWant(t, rmAuth(t, m, rmUser, "wrong"), mechs.Reject, rimap.ReplyRejected)
					rmWant(t, rmAuth(t, m, rmUTFUser, rmUTFPass), mechs.Accept, rimap.ReplyOK)
				}
				if c.logHas != "" && (!strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), c.logHas)) {
					t.Fatalf("no error-level line with %q:\n%s", c.logHas, logs.String())
				}
				if strings.Contains(logs.String(), rmPass) || strings.Contains(logs.String(), rmUTFPass) {
					t.Fatalf("password logged:\n%s", logs.String())
				}
			})
		}
	}
	// OpenSSL sends TLS 1.3 session tickets after the handshake; on a
	// ready STARTTLS connection they wait unread. They must not make the
	// connection look closed.
	for _, mode := range []struct{ name, option, tls string }{{"starttls", dv.option(), "starttls"}, {"implicit", imaps, "implicit"}} {
		t.Run("pool reuse "+mode.name, func(t *testing.T) {
			m, _ := rmMech(t, mode.option, rimap.KeyTLS, mode.tls, rimap.KeyCAFile, dv.caFile, rimap.KeyPoolSize, "2")
			rmWaitReady(t, m, 2)
			time.Sleep(200 * time.Millisecond)
			for i := 0; i < 4; i++ {
				rmWant(t, rmAuth(t, m, rmUser, "wrong"), mechs.Reject, rimap.ReplyRejected)
			}
			rmWant(t, rmAuth(t, m, rmUser, rmPass), mechs.Accept, rimap.ReplyOK)
			if st := m.Stats(); st.Dead != 0 || st.Reuses != 5 {
				t.Fatalf("ready connections not reused: %+v", st)
			}
		})
	}
}

func rmWaitReady(t *testing.T, m *rimap.Mech, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for m.Stats().Ready < n {
		if time.Now().After(deadline) {
			t.Fatalf("pool: %+v, want %d ready", m.Stats(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRimapDovecotStoppedAndBack: with Dovecot gone, "Couldn't contact"
// (the pool's connections are found dead, not used); once it is back, the
// next request succeeds without a restart.
func TestRimapDovecotStoppedAndBack(t *testing.T) {
	dv := rmStartDovecot(t)
	for _, pool := range []string{"0", "3"} {
		t.Run("pool="+pool, func(t *testing.T) {
			for _, tlsMode := range []string{"none", "starttls"} {
				m, logs := rmMech(t, dv.option(), rimap.KeyPoolSize, pool, rimap.KeyTLS, tlsMode, rimap.KeyCAFile, dv.caFile, rimap.KeyConnectTimeout, "2s")
				rmWant(t, rmAuth(t, m, rmUser, rmPass), mechs.Accept, rimap.ReplyOK)
				if pool != "0" {
					rmWaitReady(t, m, 3)
				}
				dv.stop(t)
				time.Sleep(200 * time.Millisecond)
				start := time.Now()
				rmWant(t, rmAuth(t, m, rmUser, rmPass), mechs.TempFail, rimap.ReplyNoContact)
				if d := time.Since(start); d > 3*time.Second {
					t.Fatalf("%s: Couldn't contact took %v", tlsMode, d)
				}
				dv.start(t)
				rmWant(t, rmAuth(t, m, rmUser, rmPass), mechs.Accept, rimap.ReplyOK)
				rmWant(t, rmAuth(t, m, rmUser, "wrong"), mechs.Reject, rimap.ReplyRejected)
				if strings.Contains(logs.String(), rmPass) {
					t.Fatalf("password logged:\n%s", logs.String())
				}
			}
		})
	}
}

// rmRecorder is a minimal IMAP server that greets, answers each LOGIN with
// reply and records every byte each connection brings, until it closes.
type rmRecorder struct {
	ln    net.Listener
	reply string
	got   chan string
}

func rmNewRecorder(t *testing.T, greeting, reply string) *rmRecorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &rmRecorder{ln: ln, reply: reply, got: make(chan string, 16)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				br := bufio.NewReader(c)
				var rec strings.Builder
				_, _ = c.Write([]byte(greeting))
				for {
					line, err := br.ReadString('\n')
					rec.WriteString(line)
					if err != nil {
						break
					}
					// a non-synchronizing literal: its bytes, then the rest
					if i := strings.LastIndex(line, "{"); i >= 0 && strings.HasSuffix(line, "+}\r\n") {
						n, _ := strconv.Atoi(line[i+1 : len(line)-4])
						b := make([]byte, n)
						k, _ := io.ReadFull(br, b)
						rec.Write(b[:k])
						rest, _ := br.ReadString('\n')
						rec.WriteString(rest)
						line = rest
					}
					if strings.HasPrefix(rec.String(), "saslauthd LOGIN") && strings.Count(rec.String(), "\r\n") == 1+strings.Count(rec.String(), "+}\r\n") {
						_, _ = c.Write([]byte(r.reply))
					}
				}
				r.got <- rec.String()
			}()
		}
	}()
	return r
}

func (r *rmRecorder) option() string {
	return "127.0.0.1/" + strconv.Itoa(r.ln.Addr().(*net.TCPAddr).Port)
}

func (r *rmRecorder) next(t *testing.T) string {
	t.Helper()
	select {
	case s := <-r.got:
		return s
	case <-time.After(30 * time.Second):
		t.Fatal("no connection recorded")
		return ""
	}
}

// TestRimapCompatWireBytes is spec §13 cases 26, 32, 33 and 38 on the wire:
// for printable ASCII credentials saslgate (without the pool) sends exactly
// the bytes Cyrus sends, LOGOUT included. For UTF-8 it sends a literal
// where Cyrus puts the raw bytes in a quoted string.
func TestRimapCompatWireBytes(t *testing.T) {
	for _, reply := range []string{"saslauthd OK done\r\n", "saslauthd NO [AUTHENTICATIONFAILED] no\r\n"} {
		rec := rmNewRecorder(t, "* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\r\n", reply)
		cyrus := rmCyrus(t, rec.option(), "-r")
		sg, _ := rmSaslgate(t, mechs.Options{Option: rec.option(), Values: map[string]string{rimap.KeyPoolSize: "0"}}, true)
		cases := []struct {
			name         string
			req          protocol.Request
			sameAsCyrus  bool
			saslgateSent string
		}{
			{"32 u/p", protocol.Request{Login: "u", Password: "p", Service: "imap"}, true,
				"saslauthd LOGIN \"u\" \"p\"\r\nsaslauthd LOGOUT\r\n"},
			{"38 quoting", protocol.Request{Login: `al"i\ce`, Password: `p\"w`, Service: "imap"}, true,
				`saslauthd LOGIN "al\"i\\ce" "p\\\"w"` + "\r\nsaslauthd LOGOUT\r\n"},
			{"26 -r", protocol.Request{Login: "bob", Password: "p", Service: "smtp", Realm: "example.org"}, true,
				"saslauthd LOGIN \"bob@example.org\" \"p\"\r\nsaslauthd LOGOUT\r\n"},
			{"spaces and symbols", protocol.Request{Login: "a b", Password: "x y {1} (z) %*~", Service: "imap"}, true,
				"saslauthd LOGIN \"a b\" \"x y {1} (z) %*~\"\r\nsaslauthd LOGOUT\r\n"},
			{"38 UTF-8: a literal", protocol.Request{Login: "u", Password: "pä✓", Service: "imap"}, false,
				"saslauthd LOGIN \"u\" {6+}\r\npä✓\r\nsaslauthd LOGOUT\r\n"},
		}
		for _, c := range cases {
			cyReply := ask(cyrus.Socket(), c.req)
			cyBytes := rec.next(t)
			sgReply := ask(sg, c.req)
			sgBytes := rec.next(t)
			name := c.name + " / " + strings.Fields(reply)[1]
			if cyReply != sgReply {
				t.Errorf("%s: replies differ: cyrus %q, saslgate %q", name, cyReply, sgReply)
			}
			if sgBytes != c.saslgateSent {
				t.Errorf("%s: saslgate sent %q, want %q", name, sgBytes, c.saslgateSent)
			}
			if c.sameAsCyrus && cyBytes != sgBytes {
				t.Errorf("%s: cyrus sent %q, saslgate %q", name, cyBytes, sgBytes)
			}
			t.Logf("%s: cyrus sent %q; saslgate sent %q; reply %q", name, cyBytes, sgBytes, sgReply)
		}
	}
}

// rmShape is how a scripted server greets and answers one LOGIN.
type rmShape struct {
	name     string
	greeting string
	reply    []string // sent in separate segments, 30 ms apart
	want     string   // the reply per spec §13
}

// TestRimapCompatShapes is spec §13 cases 32-37 and 39 against the real
// Cyrus: the same scripted server shapes, the same replies.
func TestRimapCompatShapes(t *testing.T) {
	shapes := []rmShape{
		{"32 OK", "* OK ready\r\n", []string{"saslauthd OK done\r\n"}, rimap.ReplyOK},
		{"33 NO", "* OK ready\r\n", []string{"saslauthd NO bad\r\n"}, rimap.ReplyRejected},
		{"34 * BYE", "* BYE busy\r\n", nil, rimap.ReplyUnavailable},
		{"34 * NO", "* NO down\r\n", nil, rimap.ReplyUnavailable},
		{"35 HELLO, then close", "HELLO\r\n", nil, rimap.ReplyUnexpected},
		{"35 HELLO with a star", "HELLO *\r\n", nil, rimap.ReplyUnexpected},
		{"36 * CAPABILITY then OK", "* OK ready\r\n", []string{"* CAPABILITY IMAP4rev1\r\nsaslauthd OK done\r\n"}, rimap.ReplyOK},
		{"36 * OK [ALERT] then OK", "* OK ready\r\n", []string{"* OK [ALERT] hi\r\nsaslauthd OK done\r\n"}, rimap.ReplyUnexpected},
		{"36 BAD", "* OK ready\r\n", []string{"saslauthd BAD what\r\n"}, rimap.ReplyUnexpected},
		{"37 split", "* OK ready\r\n", []string{"saslauthd O", "K done\r\n"}, rimap.ReplyOK},
		{"CAPABILITY, blank line, NO", "* OK ready\r\n", []string{"* CAPABILITY X\r\n\r\nsaslauthd NO x\r\n"}, rimap.ReplyRejected},
		{"empty line first", "* OK ready\r\n", []string{"\r\nsaslauthd OK\r\n"}, rimap.ReplyUnexpected},
		{"NO [AUTHENTICATIONFAILED]", "* OK [CAPABILITY IMAP4rev1] ready\r\n", []string{"saslauthd NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"}, rimap.ReplyRejected},
		{"closed after LOGIN", "* OK ready\r\n", []string{""}, rimap.ReplyUnexpected},
	}
	var cur atomic.Pointer[rmShape]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(s *rmShape) {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				_, _ = c.Write([]byte(s.greeting))
				br := bufio.NewReader(c)
				if s.reply == nil {
					time.Sleep(100 * time.Millisecond)
					return
				}
				if _, err := br.ReadString('\n'); err != nil {
					return
				}
				for i, r := range s.reply {
					if r == "" {
						return
					}
					if i > 0 {
						time.Sleep(30 * time.Millisecond)
					}
					_, _ = c.Write([]byte(r))
				}
				_, _ = io.Copy(io.Discard, br)
			}(cur.Load())
		}
	}()
	option := "127.0.0.1/" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	cyrus := rmCyrus(t, option)
	sg, logs := rmSaslgate(t, mechs.Options{Option: option, Values: map[string]string{rimap.KeyPoolSize: "0"}}, false)
	req := protocol.Request{Login: "u", Password: "Shape-Secret-7", Service: "imap"}
	for i := range shapes {
		s := &shapes[i]
		cur.Store(s)
		cy := ask(cyrus.Socket(), req)
		got := ask(sg, req)
		if cy != got || got != s.want {
			t.Errorf("%s: cyrus %q, saslgate %q, spec %q", s.name, cy, got, s.want)
		}
	}
	// 39: a closed port
	closed := "127.0.0.1/" + strconv.Itoa(rmFreePort(t))
	cyrus2 := rmCyrus(t, closed)
	sg2, _ := rmSaslgate(t, mechs.Options{Option: closed}, false)
	if cy, got := ask(cyrus2.Socket(), req), ask(sg2, req); cy != got || got != rimap.ReplyNoContact {
		t.Errorf("39 closed port: cyrus %q, saslgate %q", cy, got)
	}
	if strings.Contains(logs.String(), "Shape-Secret-7") {
		t.Fatalf("password logged:\n%s", logs.String())
	}
}
