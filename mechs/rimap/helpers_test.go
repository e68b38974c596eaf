package rimap

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/saslgate/saslgate/mechs"
)

// ---- options and the mechanism under test ----

// testOpts are options for a test: no pool unless asked, short timeouts.
func testOpts(option string, kv ...string) mechs.Options {
	o := mechs.Options{Option: option, Values: map[string]string{
		KeyPoolSize:       "0",
		KeyConnectTimeout: "2s",
		KeyCommandTimeout: "2s",
	}}
	for i := 0; i+1 < len(kv); i += 2 {
		o.Values[kv[i]] = kv[i+1]
	}
	return o
}

// logBuf collects a mechanism's log at debug level.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func newLogger() (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// newMech builds the mechanism through the registry, as the daemon does,
// and closes it when the test ends.
func newMech(t testing.TB, o mechs.Options) (*Mech, *logBuf) {
	t.Helper()
	logger, lb := newLogger()
	mm, err := mechs.New(name, o, logger)
	if err != nil {
		t.Fatalf("mechs.New: %v", err)
	}
	m := mm.(*Mech)
	t.Cleanup(func() { m.Close() })
	return m, lb
}

func auth(t testing.TB, m *Mech, login, pw string) mechs.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := m.Authenticate(ctx, mechs.Request{Login: login, Password: mechs.Password(pw), Service: "imap"})
	if err != nil {
		t.Fatalf("Authenticate returned an error: %v", err)
	}
	return res
}

func wantResult(t testing.TB, res mechs.Result, v mechs.Verdict, reply string) {
	t.Helper()
	if res.Verdict != v || res.Reply != reply {
		t.Fatalf("got %v %q (reason %q), want %v %q", res.Verdict, res.Reply, res.Reason, v, reply)
	}
}

// ---- a scripted IMAP server ----

// fakeServer accepts connections on 127.0.0.1 and runs handler on each,
// recording every byte the client sent.
type fakeServer struct {
	t       testing.TB
	ln      net.Listener
	handler func(*fakeConn)
	mu      sync.Mutex
	conns   []*fakeConn
	arrived chan struct{}
	wg      sync.WaitGroup
}

type fakeConn struct {
	net.Conn
	br   *bufio.Reader
	mu   sync.Mutex
	got  bytes.Buffer
	done chan struct{} // closed once the handler returned and the conn is closed
}

func newFake(t testing.TB, handler func(*fakeConn)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, handler: handler, arrived: make(chan struct{}, 1024)}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.close)
	return s
}

// option is the server as -O writes it: 127.0.0.1/PORT.
func (s *fakeServer) option() string {
	return "127.0.0.1/" + strconv.Itoa(s.ln.Addr().(*net.TCPAddr).Port)
}

func (s *fakeServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		fc := &fakeConn{Conn: c, br: bufio.NewReader(c), done: make(chan struct{})}
		s.mu.Lock()
		s.conns = append(s.conns, fc)
		s.mu.Unlock()
		s.arrived <- struct{}{}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer close(fc.done)
			defer c.Close()
			s.handler(fc)
		}()
	}
}

func (s *fakeServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// count is how many connections arrived so far.
func (s *fakeServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// conn waits for the i-th connection (from 0) to arrive.
func (s *fakeServer) conn(i int) *fakeConn {
	s.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		if i < len(s.conns) {
			c := s.conns[i]
			s.mu.Unlock()
			return c
		}
		s.mu.Unlock()
		select {
		case <-s.arrived:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			s.t.Fatalf("connection %d never arrived", i)
		}
	}
}

// finished waits until the connection is over and returns what the client
// sent on it.
func (fc *fakeConn) finished(t testing.TB) string {
	t.Helper()
	select {
	case <-fc.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("connection still open; client sent %q so far", fc.received())
	}
	return fc.received()
}

func (fc *fakeConn) received() string {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.got.String()
}

func (fc *fakeConn) record(b []byte) {
	fc.mu.Lock()
	fc.got.Write(b)
	fc.mu.Unlock()
}

func (fc *fakeConn) send(s string) { _, _ = io.WriteString(fc.Conn, s) }

var literalRE = regexp.MustCompile(`\{(\d+)(\+?)\}\r\n$`)

// readCommand reads one IMAP command, literals included (a synchronizing
// literal gets "+ go ahead"), and returns it as sent.
func (fc *fakeConn) readCommand() (string, error) {
	var cmd []byte
	for {
		line, err := fc.br.ReadBytes('\n')
		fc.record(line)
		cmd = append(cmd, line...)
		if err != nil {
			return string(cmd), err
		}
		m := literalRE.FindSubmatch(line)
		if m == nil {
			return string(cmd), nil
		}
		n, _ := strconv.Atoi(string(m[1]))
		if len(m[2]) == 0 {
			fc.send("+ go ahead\r\n")
		}
		lit := make([]byte, n)
		k, err := io.ReadFull(fc.br, lit)
		fc.record(lit[:k])
		cmd = append(cmd, lit[:k]...)
		if err != nil {
			return string(cmd), err
		}
	}
}

// drain records everything until the client closes.
func (fc *fakeConn) drain() {
	b, _ := io.ReadAll(fc.br)
	fc.record(b)
}

// chunk is a piece of a scripted reply; a pause sends what came before as
// its own TCP segment.
type chunk struct {
	text  string
	pause time.Duration
}

// script greets, answers the first command with reply (sent in pieces),
// then records everything until the client closes.
func script(greeting string, reply ...chunk) func(*fakeConn) {
	return func(fc *fakeConn) {
		fc.send(greeting)
		if len(reply) == 0 {
			fc.drain()
			return
		}
		if _, err := fc.readCommand(); err != nil {
			return
		}
		for _, c := range reply {
			if c.pause > 0 {
				time.Sleep(c.pause)
			}
			fc.send(c.text)
		}
		fc.drain()
	}
}

// imapLike answers LOGIN with OK when the password is right and NO
// otherwise, LOGOUT with BYE and OK, and anything else with BAD, on as
// many commands as the client sends.
func imapLike(greeting, user, pass string) func(*fakeConn) {
	return func(fc *fakeConn) {
		fc.send(greeting)
		for {
			cmd, err := fc.readCommand()
			if err != nil {
				return
			}
			switch {
			case cmd == fmt.Sprintf("saslauthd LOGIN %s %s\r\n", quote(nil, user), quote(nil, pass)):
				fc.send("saslauthd OK Logged in\r\n")
			case strings.HasPrefix(cmd, "saslauthd LOGIN "):
				fc.send("saslauthd NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
			case cmd == "saslauthd LOGOUT\r\n":
				fc.send("* BYE Logging out\r\nsaslauthd OK Logout completed.\r\n")
				fc.drain()
				return
			default:
				fc.send("saslauthd BAD Error in IMAP command\r\n")
			}
		}
	}
}

// closedPort is a port on 127.0.0.1 where nothing listens.
func closedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return "127.0.0.1/" + strconv.Itoa(port)
}

// ---- go-imap's in-memory server ----

type memServer struct {
	srv      *imapserver.Server
	implicit bool
	addr     string // "127.0.0.1/PORT"
	wire     *logBuf
}

type memConfig struct {
	insecureAuth bool
	startTLS     *tls.Config // offered through STARTTLS
	implicit     *tls.Config // TLS from the first byte
}

// newMemServer runs imapmemserver with the given users (login, password
// pairs). What the clients send is recorded in wire.
func newMemServer(t testing.TB, mc memConfig, users ...string) *memServer {
	t.Helper()
	mem := imapmemserver.New()
	for i := 0; i+1 < len(users); i += 2 {
		mem.AddUser(imapmemserver.NewUser(users[i], users[i+1]))
	}
	wire := &logBuf{}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}},
		InsecureAuth: mc.insecureAuth,
		TLSConfig:    mc.startTLS,
		Logger:       log.New(io.Discard, "", 0),
		DebugWriter:  wire,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if mc.implicit != nil {
		ln = tls.NewListener(ln, mc.implicit)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &memServer{srv: srv, implicit: mc.implicit != nil, addr: "127.0.0.1/" + strconv.Itoa(port), wire: wire}
}

// ---- a throw-away CA ----

type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	pemFile string
}

func newCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "saslgate rimap test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pemFile: path}
}

// issue makes a server certificate for the given DNS names and IPs.
func (ca *testCA) issue(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (ca *testCA) serverConfig(t testing.TB, names ...string) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{ca.issue(t, names...)}}
}

// noPassword fails when a log holds one of the passwords.
func noPassword(t testing.TB, log string, pws ...string) {
	t.Helper()
	for _, pw := range pws {
		if pw != "" && strings.Contains(log, pw) {
			t.Fatalf("the log holds the password %q:\n%s", pw, log)
		}
	}
}
