package rimap

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/saslgate/saslgate/mechs"
)

const (
	poolUser = "u"
	poolPass = "Pool-Secret-1"
)

// waitReady waits until the pool holds at least n ready connections.
func waitReady(t testing.TB, m *Mech, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for m.pool.ready() < n {
		if time.Now().After(deadline) {
			t.Fatalf("pool has %d ready connections, want %d", m.pool.ready(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// byIndex runs first on the first n connections and then on the rest.
func byIndex(n int32, first, then func(*fakeConn)) func(*fakeConn) {
	var seen atomic.Int32
	return func(fc *fakeConn) {
		if seen.Add(1) <= n {
			first(fc)
			return
		}
		then(fc)
	}
}

var login = "saslauthd LOGIN \"u\" \"wrong\"\r\n"

func TestPoolReuseAfterRejectReplaceAfterAccept(t *testing.T) {
	srv := newFake(t, imapLike("* OK ready\r\n", poolUser, poolPass))
	m, lb := newMech(t, testOpts(srv.option(), KeyPoolSize, "1"))
	waitReady(t, m, 1)
	for i := 0; i < 3; i++ {
		wantResult(t, auth(t, m, poolUser, "wrong"), mechs.Reject, ReplyRejected)
	}
	if n := srv.count(); n != 1 {
		t.Fatalf("%d connections for three rejections, want 1", n)
	}
	wantResult(t, auth(t, m, poolUser, poolPass), mechs.Accept, ReplyOK)
	want := strings.Repeat(login, 3) + `saslauthd LOGIN "u" "` + poolPass + "\"\r\nsaslauthd LOGOUT\r\n"
	if got := srv.conn(0).finished(t); got != want {
		t.Fatalf("first connection carried %q, want %q", got, want)
	}
	// the accepted connection is replaced in the background
	waitReady(t, m, 1)
	if n := srv.count(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
	wantResult(t, auth(t, m, poolUser, poolPass), mechs.Accept, ReplyOK)
	if got := srv.conn(1).finished(t); got != `saslauthd LOGIN "u" "`+poolPass+"\"\r\nsaslauthd LOGOUT\r\n" {
		t.Fatalf("replacement carried %q", got)
	}
	noPassword(t, lb.String(), poolPass)
}

func TestPoolIdleExpiry(t *testing.T) {
	srv := newFake(t, imapLike("* OK ready\r\n", poolUser, poolPass))
	m, _ := newMech(t, testOpts(srv.option(), KeyPoolSize, "2", KeyPoolIdle, "100ms"))
	waitReady(t, m, 2)
	for i := 0; i < 2; i++ {
		if got := srv.conn(i).finished(t); got != "saslauthd LOGOUT\r\n" {
			t.Fatalf("idle connection %d got %q, want LOGOUT", i, got)
		}
	}
	if n := m.pool.ready(); n != 0 {
		t.Fatalf("%d ready connections after the idle time", n)
	}
	if m.pool.expired.Load() != 2 {
		t.Fatalf("expired %d", m.pool.expired.Load())
	}
	// not replaced until a request comes
	time.Sleep(150 * time.Millisecond)
	if srv.count() != 2 {
		t.Fatalf("%d connections: idle ones were replaced without demand", srv.count())
	}
	wantResult(t, auth(t, m, poolUser, poolPass), mechs.Accept, ReplyOK)
}

// A connection the server closed, or spoke on, while it waited in the pool
// is never handed out.
func TestPoolServerClosedIdle(t *testing.T) {
	variants := []struct {
		name string
		warm func(*fakeConn)
	}{
		{"closed", func(fc *fakeConn) { fc.send("* OK ready\r\n") }},
		{"BYE then closed", func(fc *fakeConn) {
			fc.send("* OK ready\r\n")
			time.Sleep(20 * time.Millisecond)
			fc.send("* BYE Autologout; idle for too long\r\n")
		}},
		{"BYE, left open", func(fc *fakeConn) {
			fc.send("* OK ready\r\n")
			time.Sleep(20 * time.Millisecond)
			fc.send("* BYE Autologout; idle for too long\r\n")
			fc.drain()
		}},
		{"reset", func(fc *fakeConn) {
			fc.send("* OK ready\r\n")
			time.Sleep(20 * time.Millisecond)
			fc.Conn.(interface{ SetLinger(int) error }).SetLinger(0)
		}},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			srv := newFake(t, byIndex(2, v.warm, imapLike("* OK ready\r\n", poolUser, poolPass)))
			// a long idle time: the janitor stays out of the way, get decides
			m, _ := newMech(t, testOpts(srv.option(), KeyPoolSize, "2", KeyPoolIdle, "1m"))
			waitReady(t, m, 2)
			time.Sleep(100 * time.Millisecond)
			wantResult(t, auth(t, m, poolUser, poolPass), mechs.Accept, ReplyOK)
			if d := m.pool.dead.Load(); d != 2 {
				t.Fatalf("dead = %d, want 2", d)
			}
			for i := 0; i < 2; i++ {
				if got := srv.conn(i).received(); strings.Contains(got, "LOGIN") {
					t.Fatalf("LOGIN sent on a dead connection: %q", got)
				}
			}
		})
	}
	t.Run("janitor drops them without a request", func(t *testing.T) {
		srv := newFake(t, byIndex(2, variants[0].warm, imapLike("* OK ready\r\n", poolUser, poolPass)))
		m, _ := newMech(t, testOpts(srv.option(), KeyPoolSize, "2", KeyPoolIdle, "400ms"))
		waitReady(t, m, 2)
		deadline := time.Now().Add(300 * time.Millisecond)
		for m.pool.ready() > 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if m.pool.ready() != 0 || m.pool.dead.Load() != 2 || m.pool.expired.Load() != 0 {
			t.Fatalf("ready %d dead %d expired %d", m.pool.ready(), m.pool.dead.Load(), m.pool.expired.Load())
		}
	})
}

// A LOGIN whose write fails never reached the server whole: it is retried
// once on a new connection.
func TestPoolRetryFailedWrite(t *testing.T) {
	hold := make(chan struct{})
	srv := newFake(t, byIndex(1, func(fc *fakeConn) {
		fc.send("* OK ready\r\n")
		<-hold // never reads, never closes
	}, imapLike("* OK ready\r\n", poolUser, poolPass)))
	t.Cleanup(func() { close(hold) }) // before the server's cleanup waits for it
	m, lb := newMech(t, testOpts(srv.option(), KeyPoolSize, "1"))
	waitReady(t, m, 1)
	// our side of the ready connection can no longer write, though nothing
	// shows on it: the liveness check passes, the write fails
	m.pool.mu.Lock()
	m.pool.conns[0].raw.(interface{ CloseWrite() error }).CloseWrite()
	m.pool.mu.Unlock()
	wantResult(t, auth(t, m, poolUser, poolPass), mechs.Accept, ReplyOK)
	if !strings.Contains(lb.String(), "retrying on a new one") {
		t.Fatalf("no retry logged:\n%s", lb.String())
	}
	if got := srv.conn(1).finished(t); !strings.HasPrefix(got, "saslauthd LOGIN") {
		t.Fatalf("retry carried %q", got)
	}
	noPassword(t, lb.String(), poolPass)
}

// A LOGIN that was sent but got no answer may have been counted by the
// server: it is not sent again.
func TestPoolNoRetryWhenAmbiguous(t *testing.T) {
	srv := newFake(t, byIndex(1, func(fc *fakeConn) {
		fc.send("* OK ready\r\n")
		fc.readCommand() // then close without a word
	}, imapLike("* OK ready\r\n", poolUser, poolPass)))
	m, _ := newMech(t, testOpts(srv.option(), KeyPoolSize, "1"))
	waitReady(t, m, 1)
	wantResult(t, auth(t, m, poolUser, "wrong"), mechs.TempFail, ReplyUnexpected)
	waitReady(t, m, 1) // the replacement
	for i := 1; i < srv.count(); i++ {
		if got := srv.conn(i).received(); strings.Contains(got, "LOGIN") {
			t.Fatalf("the LOGIN was sent again on connection %d: %q", i, got)
		}
	}
}

func TestPoolBounded(t *testing.T) {
	srv := newFake(t, imapLike("* OK ready\r\n", poolUser, poolPass))
	m, _ := newMech(t, testOpts(srv.option(), KeyPoolSize, "2"))
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := auth(t, m, poolUser, "wrong")
			if res.Verdict != mechs.Reject {
				t.Errorf("%+v", res)
			}
		}()
	}
	wg.Wait()
	if n := m.pool.ready(); n > 2 {
		t.Fatalf("%d ready connections, bound is 2", n)
	}
	// the surplus was logged out
	time.Sleep(50 * time.Millisecond)
	open := 0
	for i := 0; i < srv.count(); i++ {
		select {
		case <-srv.conn(i).done:
		default:
			open++
		}
	}
	if open > 2 {
		t.Fatalf("%d connections still open", open)
	}
}

func TestPoolMaxLogins(t *testing.T) {
	srv := newFake(t, imapLike("* OK ready\r\n", poolUser, poolPass))
	m, _ := newMech(t, testOpts(srv.option(), KeyPoolSize, "1"))
	waitReady(t, m, 1)
	for i := 0; i < maxLogins; i++ {
		wantResult(t, auth(t, m, poolUser, "wrong"), mechs.Reject, ReplyRejected)
	}
	if got := srv.conn(0).finished(t); got != strings.Repeat(login, maxLogins)+"saslauthd LOGOUT\r\n" {
		t.Fatalf("first connection carried %q", got)
	}
}

func TestPoolCloseLogsOut(t *testing.T) {
	srv := newFake(t, imapLike("* OK ready\r\n", poolUser, poolPass))
	m, _ := newMech(t, testOpts(srv.option(), KeyPoolSize, "3"))
	waitReady(t, m, 3)
	m.Close()
	for i := 0; i < 3; i++ {
		if got := srv.conn(i).finished(t); got != "saslauthd LOGOUT\r\n" {
			t.Fatalf("connection %d got %q", i, got)
		}
	}
	res := auth(t, m, poolUser, poolPass) // still answers, without a pool
	wantResult(t, res, mechs.Accept, ReplyOK)
	m.Close()
}

// A server that is down at start is only a warning, once, however many
// requests find it down.
func TestPoolWarmupFailure(t *testing.T) {
	m, lb := newMech(t, testOpts(closedPort(t), KeyPoolSize, "2"))
	for i := 0; i < 5; i++ {
		wantResult(t, auth(t, m, poolUser, poolPass), mechs.TempFail, ReplyNoContact)
	}
	time.Sleep(50 * time.Millisecond)
	if n := strings.Count(lb.String(), "cannot open a ready connection"); n != 1 {
		t.Fatalf("%d warnings:\n%s", n, lb.String())
	}
}
