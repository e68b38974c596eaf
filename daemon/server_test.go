package daemon

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/mechstest"
	"github.com/saslgate/saslgate/protocol"
)

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// startServer runs s on a socket in a temp dir and returns the socket path
// and the captured log.
func startServer(t *testing.T, s *Server, m mechs.Mechanism) (string, *logBuf) {
	t.Helper()
	return startServerWrapped(t, s, m, nil)
}

// plainListener hides the *net.UnixListener inside, so that Serve takes
// the netpoller path it uses for any other listener.
type plainListener struct{ net.Listener }

// startServerWrapped is startServer with the listener passed through wrap
// (nil: as it is).
func startServerWrapped(t *testing.T, s *Server, m mechs.Mechanism, wrap func(net.Listener) net.Listener) (string, *logBuf) {
	t.Helper()
	lb := &logBuf{}
	if s.Logger == nil {
		s.Logger = slog.New(NewLogHandler("saslauthd", false, lb, slog.LevelDebug))
	}
	s.SetAuth(mechs.NewChain(s.Logger, m))
	dir := t.TempDir()
	rd, err := LockRunDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	ln, err = rd.Listen()
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		ln = wrap(ln)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
		rd.Close()
	})
	return rd.SocketPath(), lb
}

var users = mechstest.Static{MechName: "static", Users: map[string]string{"alice": "secret", "bob": "hunter2"}}

func ask(t *testing.T, sock string, req protocol.Request) string {
	t.Helper()
	c := &protocol.Client{Path: sock, Timeout: 10 * time.Second}
	r, err := c.Do(context.Background(), req)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	return r
}

func TestServer_Replies(t *testing.T) {
	sock, _ := startServer(t, &Server{}, users)
	tests := []struct {
		name string
		req  protocol.Request
		want string
	}{
		{"good", protocol.Request{Login: "alice", Password: "secret", Service: "smtp"}, "OK"},
		{"bad password", protocol.Request{Login: "alice", Password: "nope", Service: "smtp"}, "NO"},
		{"unknown", protocol.Request{Login: "carol", Password: "secret"}, "NO"},
		{"empty login", protocol.Request{Login: "", Password: "x"}, "NO NULL login received"},
		{"empty password", protocol.Request{Login: "alice", Password: ""}, "NO NULL password received"},
		{"nul login", protocol.Request{Login: "\x00alice", Password: "x"}, "NO NULL login received"},
		{"nul in password cuts it", protocol.Request{Login: "alice", Password: "secret\x00junk"}, "OK"},
		{"long login", protocol.Request{Login: strings.Repeat("a", 257), Password: "x"}, "NO "},
		{"long realm wins over empties", protocol.Request{Realm: strings.Repeat("r", 257)}, "NO "},
		{"256 accepted", protocol.Request{Login: strings.Repeat("a", 256), Password: "x"}, "NO"},
		{"fifth field", protocol.Request{Login: "alice", Password: "secret", ClientAddr: "192.0.2.7;41234", HasClientAddr: true}, "OK"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ask(t, sock, tc.req); got != tc.want {
				t.Fatalf("test %d: reply %q, want %q", i, got, tc.want)
			}
		})
	}
}

// rawExchange sends b, half-closes if asked, and returns every byte the
// server sent before closing.
func rawExchange(t *testing.T, sock string, b []byte, halfClose bool) []byte {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	if halfClose {
		_ = c.(*net.UnixConn).CloseWrite()
	}
	got, _ := io.ReadAll(c)
	return got
}

func wire(fields ...string) []byte {
	var b []byte
	for _, f := range fields {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return b
}

func TestServer_Framing(t *testing.T) {
	sock, _ := startServer(t, &Server{DrainTimeout: 2 * time.Second}, users)
	tests := []struct {
		name      string
		in        []byte
		halfClose bool
		want      []byte
	}{
		{"reply has no NUL, server half-closes", wire("alice", "secret", "smtp", ""), false, []byte("\x00\x02OK")},
		{"oversize login, rest drained", append(binary.BigEndian.AppendUint16(nil, 257), bytes.Repeat([]byte("a"), 257)...), true, []byte("\x00\x03NO ")},
		{"0xFFFF header", append([]byte{0xff, 0xff}, "0123456789"...), true, []byte("\x00\x03NO ")},
		{"one byte then close", []byte{0}, true, nil},
		{"three fields then close", wire("alice", "secret", "smtp"), true, nil},
		{"empty connection", nil, true, nil},
		{"two requests, one reply", append(wire("alice", "secret", "smtp", ""), wire("bob", "hunter2", "smtp", "")...), false, []byte("\x00\x02OK")},
		{"http garbage: first length 0x4745 is too long", []byte("GET / HTTP/1.0\r\n\r\n"), true, []byte("\x00\x03NO ")},
		{"short field then close", []byte("\x00\x05ab"), true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := rawExchange(t, sock, tc.in, tc.halfClose); !bytes.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestServer_JoinRealm(t *testing.T) {
	var seen atomic.Value
	m := mechstest.Func{MechName: "f", Fn: func(_ context.Context, r mechs.Request) (mechs.Result, error) {
		seen.Store(r.Login + "|" + r.Realm)
		return mechs.Result{Verdict: mechs.Reject, Reply: "NO"}, nil
	}}
	sock, lb := startServer(t, &Server{JoinRealm: true}, m)
	ask(t, sock, protocol.Request{Login: "u1", Password: "p", Service: "smtp", Realm: "example.com"})
	if got := seen.Load(); got != "u1@example.com|example.com" {
		t.Fatalf("mechanism saw %q", got)
	}
	if !strings.Contains(lb.String(), "auth failure: [user=u1@example.com] [service=smtp] [realm=example.com] [mech=f] [reason=Unknown]") {
		t.Fatalf("log:\n%s", lb.String())
	}
	ask(t, sock, protocol.Request{Login: "u1", Password: "p", Service: "smtp"})
	if got := seen.Load(); got != "u1|" {
		t.Fatalf("empty realm: mechanism saw %q", got)
	}
	long := strings.Repeat("l", 256)
	ask(t, sock, protocol.Request{Login: long, Password: "p", Realm: strings.Repeat("r", 256)})
	if got := seen.Load().(string); len(strings.Split(got, "|")[0]) != 512 {
		t.Fatalf("joined login is %d bytes, want saslauthd's 512", len(strings.Split(got, "|")[0]))
	}
}

// A client that stalls mid-request, one that never closes after its reply,
// and a thousand idle connections must not keep a good request from its
// reply; the stalled ones are closed at the deadline.
func TestServer_SlowClients(t *testing.T) {
	s := &Server{ReadTimeout: 500 * time.Millisecond, DrainTimeout: 500 * time.Millisecond}
	sock, lb := startServer(t, s, users)

	stall, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer stall.Close()
	stall.Write([]byte{0}) // one byte of a length header, then nothing

	noClose, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer noClose.Close()
	noClose.Write(wire("alice", "secret", "smtp", ""))

	var idle []net.Conn
	for i := 0; i < 1000; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		idle = append(idle, c)
	}
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()

	var lat []time.Duration
	for i := 0; i < 5; i++ {
		t0 := time.Now()
		if got := ask(t, sock, protocol.Request{Login: "alice", Password: "secret"}); got != "OK" {
			t.Fatalf("good request got %q", got)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	if lat[2] > 100*time.Millisecond {
		t.Errorf("median good-request latency %v with 1,000 idle connections open, want under 100ms (all: %v)", lat[2], lat)
	}

	// the stalled connections are closed by the server at the deadline
	for name, c := range map[string]net.Conn{"stalled": stall, "never-closing": noClose, "idle": idle[0]} {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.ReadAll(c)
		if err != nil {
			t.Errorf("%s: server did not close it: %v", name, err)
		}
	}
	if !strings.Contains(lb.String(), "timed out waiting for the request") {
		t.Errorf("no log line for the read timeout:\n%s", lb.String())
	}
}

// -n caps mechanism calls in flight; the connections beyond it wait and
// are all answered (spec §13 case 22).
func TestServer_MaxInFlight(t *testing.T) {
	var cur, peak atomic.Int32
	release := make(chan struct{})
	m := mechstest.Func{MechName: "slow", Fn: func(ctx context.Context, r mechs.Request) (mechs.Result, error) {
		n := cur.Add(1)
		defer cur.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return mechs.Result{Verdict: mechs.Accept, Reply: "OK"}, nil
	}}
	sock, _ := startServer(t, &Server{MaxInFlight: 3}, m)
	const n = 10
	replies := make(chan string, n)
	for i := 0; i < n; i++ {
		go func() {
			c := &protocol.Client{Path: sock, Timeout: 20 * time.Second}
			r, err := c.Do(context.Background(), protocol.Request{Login: "x", Password: "y"})
			if err != nil {
				r = err.Error()
			}
			replies <- r
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for cur.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if p := peak.Load(); p != 3 {
		t.Fatalf("peak in flight %d, want 3", p)
	}
	close(release)
	for i := 0; i < n; i++ {
		if r := <-replies; r != "OK" {
			t.Fatalf("reply %q", r)
		}
	}
}

// MaxConns bounds open connections: beyond it clients wait in the backlog,
// and are served once a slot frees.
func TestServer_MaxConns(t *testing.T) {
	s := &Server{MaxConns: 2, ReadTimeout: 300 * time.Millisecond}
	sock, _ := startServer(t, s, users)
	a, _ := net.Dial("unix", sock)
	b, _ := net.Dial("unix", sock)
	defer a.Close()
	defer b.Close()
	time.Sleep(50 * time.Millisecond)
	s.mu.Lock()
	open := len(s.active)
	s.mu.Unlock()
	if open != 2 {
		t.Fatalf("%d connections accepted, want 2", open)
	}
	// a third waits until the two idle ones time out, then is answered
	if got := ask(t, sock, protocol.Request{Login: "alice", Password: "secret"}); got != "OK" {
		t.Fatalf("got %q", got)
	}
}

func TestServer_TempFailIsNotReject(t *testing.T) {
	down := mechstest.Func{MechName: "down", Fn: func(context.Context, mechs.Request) (mechs.Result, error) {
		return mechs.Result{}, errors.New("backend unreachable")
	}}
	s := &Server{}
	lb := &logBuf{}
	s.Logger = slog.New(NewLogHandler("saslauthd", false, lb, slog.LevelDebug))
	sock, _ := startServer(t, s, down)
	s.SetAuth(mechs.NewChain(s.Logger, down, users)) // users would accept
	if got := ask(t, sock, protocol.Request{Login: "alice", Password: "secret"}); got != mechs.ReplyInternal {
		t.Fatalf("got %q, want %q", got, mechs.ReplyInternal)
	}
	if !strings.Contains(lb.String(), "backend unreachable") {
		t.Fatalf("tempfail detail not logged:\n%s", lb.String())
	}
}

func TestServer_PanicIsContained(t *testing.T) {
	boom := mechstest.Func{MechName: "boom", Fn: func(context.Context, mechs.Request) (mechs.Result, error) {
		panic("boom")
	}}
	sock, _ := startServer(t, &Server{}, boom)
	for i := 0; i < 3; i++ {
		if got := ask(t, sock, protocol.Request{Login: "a", Password: "b"}); got != mechs.ReplyInternal {
			t.Fatalf("got %q", got)
		}
	}
}

// goodPassword is a mechanism that accepts the password "good" with ok
// and rejects any other with no, counting its calls.
func goodPassword(name, ok, no string, calls *atomic.Int32) mechstest.Func {
	return mechstest.Func{MechName: name, Fn: func(_ context.Context, r mechs.Request) (mechs.Result, error) {
		calls.Add(1)
		if r.Password.Reveal() == "good" {
			return mechs.Result{Verdict: mechs.Accept, Reply: ok}, nil
		}
		return mechs.Result{Verdict: mechs.Reject, Reply: no}, nil
	}}
}

// gated is a mechanism that counts the calls in it and holds each until
// gate is closed, then accepts.
func gated() (m mechstest.Func, gate chan struct{}, in *atomic.Int32) {
	gate, in = make(chan struct{}), new(atomic.Int32)
	return mechstest.Func{MechName: "gate", Fn: func(ctx context.Context, r mechs.Request) (mechs.Result, error) {
		in.Add(1)
		<-gate
		return mechs.Result{Verdict: mechs.Accept, Reply: "OK"}, nil
	}}, gate, in
}

func TestServer_Cache(t *testing.T) {
	var calls atomic.Int32
	m := goodPassword("rimap", "OK remote authentication successful", "NO remote server rejected your credentials", &calls)
	c := NewCache(100, time.Hour)
	sock, _ := startServer(t, &Server{Cache: c}, m)
	req := protocol.Request{Login: "u", Password: "good", Service: "imap"}
	steps := []struct {
		req   protocol.Request
		want  string
		calls int32
	}{
		{req, "OK remote authentication successful", 1},
		{req, "OK", 1}, // a hit answers plain OK, as saslauthd's do
		{protocol.Request{Login: "u", Password: "good", Service: "smtp"}, "OK remote authentication successful", 2},
		{protocol.Request{Login: "u", Password: "bad", Service: "imap"}, "NO remote server rejected your credentials", 3},
		// unlike saslauthd, a rejection drops the user's cached logins: the
		// password may have changed, and the old one must stop working
		{req, "OK remote authentication successful", 4},
		{req, "OK", 4},
	}
	for i, st := range steps {
		if got := ask(t, sock, st.req); got != st.want || calls.Load() != st.calls {
			t.Fatalf("step %d: reply %q calls %d, want %q %d", i, got, calls.Load(), st.want, st.calls)
		}
	}
	c.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if got := ask(t, sock, req); got != "OK remote authentication successful" {
		t.Fatalf("after the TTL: %q", got)
	}
}

func TestCache_Bound(t *testing.T) {
	c := NewCache(3, time.Hour)
	for i := 0; i < 10; i++ {
		c.Store(mechs.Request{Login: string(rune('a' + i)), Password: "p"})
	}
	if c.Len() != 3 {
		t.Fatalf("len %d, want 3", c.Len())
	}
	if !c.Lookup(mechs.Request{Login: "j", Password: "p"}) {
		t.Fatal("newest entry evicted")
	}
	if c.Lookup(mechs.Request{Login: "j", Password: "q"}) {
		t.Fatal("wrong password hit")
	}
}

func TestServer_ShutdownAnswersInFlight(t *testing.T) {
	started := make(chan struct{})
	m := mechstest.Func{MechName: "slow", Fn: func(context.Context, mechs.Request) (mechs.Result, error) {
		close(started)
		time.Sleep(300 * time.Millisecond)
		return mechs.Result{Verdict: mechs.Accept, Reply: "OK"}, nil
	}}
	s := &Server{}
	s.Logger = slog.New(slog.DiscardHandler)
	s.SetAuth(m)
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "mux"))
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	reply := make(chan string, 1)
	go func() {
		c := &protocol.Client{Path: ln.Addr().String(), Timeout: 5 * time.Second}
		r, err := c.Do(context.Background(), protocol.Request{Login: "a", Password: "b"})
		if err != nil {
			r = err.Error()
		}
		reply <- r
	}()
	<-started
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := <-reply; r != "OK" {
		t.Fatalf("in-flight request got %q", r)
	}
	if _, err := net.Dial("unix", ln.Addr().String()); err == nil {
		t.Fatal("still accepting after Shutdown")
	}
}

func TestServer_NoPasswordInLogs(t *testing.T) {
	sock, lb := startServer(t, &Server{}, users)
	for _, pw := range []string{"secret", "Wr0ng-Pa55", "hunter2"} {
		ask(t, sock, protocol.Request{Login: "alice", Password: pw, Service: "smtp"})
	}
	out := lb.String()
	for _, pw := range []string{"secret", "Wr0ng-Pa55", "hunter2"} {
		if strings.Contains(out, pw) {
			t.Fatalf("log contains %q:\n%s", pw, out)
		}
	}
}

func TestServer_LogInjection(t *testing.T) {
	sock, lb := startServer(t, &Server{}, users)
	ask(t, sock, protocol.Request{Login: "eve\nsaslauthd[1]: auth success", Password: "x", Service: "smtp\r"})
	out := lb.String()
	if !strings.Contains(out, "[user=eve?saslauthd[1]: auth success] [service=smtp?]") {
		t.Fatalf("control characters not neutralised:\n%s", out)
	}
}

// TestServer_ConnGoroutinesReusedThenGone: on the netpoller path (any
// listener but a UNIX one), a connection goroutine outlives its connection
// to serve the next one (a fresh goroutine per connection grows a new stack
// each time), and the goroutines of a burst exit once idle.
func TestServer_ConnGoroutinesReusedThenGone(t *testing.T) {
	base := runtime.NumGoroutine()
	s := &Server{connIdle: time.Second}
	sock, _ := startServerWrapped(t, s, users, func(ln net.Listener) net.Listener { return plainListener{ln} })
	ok := protocol.Request{Login: "alice", Password: "secret", Service: "imap"}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if got := ask(t, sock, ok); got != "OK" {
				t.Errorf("reply %q", got)
			}
		})
	}
	wg.Wait()
	if n := runtime.NumGoroutine() - base; n < 3 {
		t.Errorf("%d goroutines more than before right after a burst of 50, want idle connection goroutines waiting", n)
	}
	for range 20 { // one at a time: the idle goroutines serve them
		if got := ask(t, sock, ok); got != "OK" {
			t.Fatalf("reply %q", got)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine()-base > 2 { // Serve and slack
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines more than before 10s after a burst, want the idle ones gone", runtime.NumGoroutine()-base)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestServer_AcceptorsAfterBurst: on a UNIX socket, a burst of slow
// requests all reach the mechanism at once (none waits for another's
// mechanism call: the acceptors hand each one on), and once the connection
// goroutines are idle long enough only the acceptors are left.
func TestServer_AcceptorsAfterBurst(t *testing.T) {
	base := runtime.NumGoroutine()
	m, gate, in := gated()
	s := &Server{connIdle: 100 * time.Millisecond}
	sock, _ := startServer(t, s, m)
	const n = 50
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if got := ask(t, sock, protocol.Request{Login: "alice", Password: "pw"}); got != "OK" {
				t.Errorf("reply %q", got)
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for in.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d requests reached the mechanism at once, want all: acceptors must not wait for each other", in.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(gate)
	wg.Wait()
	for range 20 {
		if got := ask(t, sock, protocol.Request{Login: "alice", Password: "pw"}); got != "OK" {
			t.Fatalf("reply %q", got)
		}
	}
	// serveUnix, the set, and one of slack for the exiting
	want := 1 + acceptors() + 1
	deadline = time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine()-base > want {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines more than before after a burst, want at most %d", runtime.NumGoroutine()-base, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
