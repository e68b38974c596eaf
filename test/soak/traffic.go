package main

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// backend is what a good client's request exercises.
type backend uint8

const (
	beSasldb     backend = iota // sasldb, the first of smtp's chain
	beSasldbAddr                // the same with the fifth field (Cyrus master's client address)
	bePAM                       // sasldb rejects, PAM (pam_unix) accepts
	beRimap                     // imap's chain: rimap against Dovecot
	beWrong                     // a wrong password: NO after the failure delay
	nBackends
)

func (b backend) String() string {
	return [...]string{"sasldb", "sasldb + client address", "pam (pam_unix)", "rimap (Dovecot)", "wrong password"}[b]
}

// want is the reply prefix a good request of b must get.
func (b backend) want() string {
	if b == beWrong {
		return "NO"
	}
	return "OK"
}

// outcome of one request.
type outcome uint8

const (
	outOK         outcome = iota // the reply wanted
	outWrongReply                // a reply, not the one wanted
	outIOError                   // connected, then no reply (reset, timeout)
	outConnect                   // could not connect
)

// rec is one good request. Times are offsets from the run's start.
type rec struct {
	start, end time.Duration
	be         backend
	out        outcome
	detail     int32 // index into recorder.details for anything but outOK, else -1
}

// recorder collects the good requests of every client.
type recorder struct {
	t0      time.Time
	mu      sync.Mutex
	recs    []rec
	details []string
}

func (r *recorder) add(be backend, start, end time.Time, out outcome, detail string) {
	x := rec{start: start.Sub(r.t0), end: end.Sub(r.t0), be: be, out: out, detail: -1}
	r.mu.Lock()
	if out != outOK {
		x.detail = int32(len(r.details))
		r.details = append(r.details, detail)
	}
	r.recs = append(r.recs, x)
	r.mu.Unlock()
}

// goodLoop sends b's request over and over, one connection per request as
// libsasl does, pause apart, until ctx ends; the request in flight is
// always finished. With stopOnRefusal it also ends once it cannot connect
// (the daemon is gone after SIGTERM).
func goodLoop(ctx context.Context, sock string, b backend, timeout, pause time.Duration, r *recorder, stopOnRefusal bool) {
	c := &protocol.Client{Path: sock, Timeout: timeout}
	req := goodRequest(b)
	for ctx.Err() == nil {
		t0 := time.Now()
		reply, err := c.Do(context.Background(), req)
		t1 := time.Now()
		var ce *protocol.ConnectError
		switch {
		case errors.As(err, &ce):
			r.add(b, t0, t1, outConnect, err.Error())
			if stopOnRefusal {
				return
			}
			time.Sleep(50 * time.Millisecond)
		case err != nil:
			r.add(b, t0, t1, outIOError, err.Error())
		case !strings.HasPrefix(reply, b.want()):
			r.add(b, t0, t1, outWrongReply, reply)
		default:
			r.add(b, t0, t1, outOK, "")
		}
		if pause > 0 {
			sleepCtx(ctx, pause)
		}
	}
}

// hostile kinds.
type kind uint8

const (
	kIdle      kind = iota // connects and sends nothing
	kSlowloris             // a valid request, one byte a second
	kHalf                  // part of a frame, then holds, half-closes or closes
	kVanish                // a full request, then gone before or during the reply
	kGarbage               // random bytes, oversized and empty fields, endless senders
	nKinds
)

func (k kind) String() string {
	return [...]string{"idle", "slowloris (1 byte/s)", "half-written frame", "vanishes mid-reply", "garbage"}[k]
}

// holds reports whether the kind keeps its connection open until the
// daemon cuts it.
func (k kind) holds() bool { return k == kIdle || k == kSlowloris || k == kHalf }

// hostileStats counts what the hostile clients saw, per kind.
type hostileStats struct {
	open      [nKinds]atomic.Int64 // connections open now
	opened    [nKinds]atomic.Int64
	dialErrs  [nKinds]atomic.Int64
	cut       [nKinds]atomic.Int64 // held connections the daemon closed
	maxLife   [nKinds]atomic.Int64 // longest held connection before the daemon cut it, ns
	overBound [nKinds]atomic.Int64 // cut later than the read timeout plus slack, or never
	replies   sync.Map             // "kind: reply" -> *atomic.Int64
	anomalies atomic.Int64         // replies that must not happen (OK to garbage, a malformed frame)
	anomMu    sync.Mutex
	anomFirst []string
}

func (h *hostileStats) reply(k kind, text string) {
	v, _ := h.replies.LoadOrStore(k.String()+": "+text, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (h *hostileStats) anomaly(what string) {
	h.anomalies.Add(1)
	h.anomMu.Lock()
	if len(h.anomFirst) < 10 {
		h.anomFirst = append(h.anomFirst, what)
	}
	h.anomMu.Unlock()
}

func (h *hostileStats) life(k kind, d, bound time.Duration) {
	h.cut[k].Add(1)
	for {
		m := h.maxLife[k].Load()
		if int64(d) <= m || h.maxLife[k].CompareAndSwap(m, int64(d)) {
			break
		}
	}
	if d > bound {
		h.overBound[k].Add(1)
	}
}

func (h *hostileStats) openNow() (n int64) {
	for k := range nKinds {
		n += h.open[k].Load()
	}
	return n
}

// hostile runs one hostile client of kind k until ctx ends. bound is how
// long the daemon may take to cut a held connection (its read timeout plus
// slack); reqFor gives a valid request to send slowly or abandon.
type hostile struct {
	sock  string
	bound time.Duration
	st    *hostileStats
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func jitter(lo, hi time.Duration) time.Duration { return lo + rand.N(hi-lo) }

func (h *hostile) run(ctx context.Context, k kind) {
	for ctx.Err() == nil {
		c, err := net.DialTimeout("unix", h.sock, 5*time.Second)
		if err != nil {
			h.st.dialErrs[k].Add(1)
			sleepCtx(ctx, jitter(100*time.Millisecond, 500*time.Millisecond))
			continue
		}
		h.st.opened[k].Add(1)
		h.st.open[k].Add(1)
		// ending the run closes every connection at once
		stop := context.AfterFunc(ctx, func() { c.Close() })
		switch k {
		case kIdle:
			h.hold(ctx, k, c, time.Now())
		case kSlowloris:
			h.slowloris(ctx, c)
		case kHalf:
			h.half(ctx, c)
		case kVanish:
			h.vanish(c)
		case kGarbage:
			h.garbage(c)
		}
		stop()
		c.Close()
		h.st.open[k].Add(-1)
		if !k.holds() {
			sleepCtx(ctx, jitter(200*time.Millisecond, 600*time.Millisecond))
		}
	}
}

// hold waits for the daemon to close c and records how long that took.
func (h *hostile) hold(ctx context.Context, k kind, c net.Conn, t0 time.Time) {
	var b [64]byte
	_ = c.SetReadDeadline(t0.Add(h.bound + time.Minute))
	for {
		n, err := c.Read(b[:])
		if n > 0 {
			h.st.anomaly(k.String() + ": a reply to an incomplete request: " + string(b[:n]))
		}
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return // we closed it
		}
		if errors.Is(err, os.ErrDeadlineExceeded) { // the daemon never cut it
			h.st.overBound[k].Add(1)
			return
		}
		h.st.life(k, time.Since(t0), h.bound)
		return
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset by peer") || strings.Contains(err.Error(), "broken pipe"))
}

// slowRequest is a valid request long enough that one byte a second cannot
// finish it within any read timeout the soak uses.
func slowRequest() []byte {
	b, _ := protocol.AppendRequest(nil, protocol.Request{
		Login: "slowloris-" + strings.Repeat("x", 40), Password: strings.Repeat("p", 40), Service: "smtp", Realm: realm})
	return b
}

func (h *hostile) slowloris(ctx context.Context, c net.Conn) {
	t0 := time.Now()
	req := slowRequest()
	for i := range req {
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(req[i : i+1]); err != nil {
			if ctx.Err() == nil {
				h.st.life(kSlowloris, time.Since(t0), h.bound)
			}
			return
		}
		if !sleepCtx(ctx, time.Second) {
			return
		}
	}
	// the whole request went through: the daemon answers it
	_ = c.SetReadDeadline(time.Now().Add(h.bound + time.Minute))
	reply, err := protocol.ReadReply(c)
	if err == nil {
		h.st.reply(kSlowloris, reply)
	}
}

func (h *hostile) half(ctx context.Context, c net.Conn) {
	req, _ := protocol.AppendRequest(nil, goodRequest(beSasldb))
	cut := 1 + rand.N(len(req)-1)
	if _, err := c.Write(req[:cut]); err != nil {
		return
	}
	switch rand.N(3) {
	case 0: // holds: the daemon must cut it at the read timeout
		h.hold(ctx, kHalf, c, time.Now())
	case 1: // half-closes: a truncated request gets no reply, as in saslauthd
		_ = c.(*net.UnixConn).CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(h.bound))
		b, _ := io.ReadAll(c)
		if len(b) > 0 {
			h.st.anomaly("a reply to a truncated request: " + string(b))
		} else {
			h.st.reply(kHalf, "(half-closed) no reply")
		}
	default: // just goes
	}
}

// vanishRequests are answered by different back ends: the daemon writes
// each reply to a client that is gone.
var vanishRequests = []backend{beSasldb, beSasldb, beSasldb, bePAM, beRimap}

func (h *hostile) vanish(c net.Conn) {
	req, _ := protocol.AppendRequest(nil, goodRequest(vanishRequests[rand.N(len(vanishRequests))]))
	if _, err := c.Write(req); err != nil {
		return
	}
	if rand.N(2) == 0 { // reads one byte of the reply, then goes
		var b [1]byte
		_ = c.SetReadDeadline(time.Now().Add(h.bound))
		_, _ = c.Read(b[:])
	} // else goes before the reply
}

// garbage sends one kind of bad input and checks the answer, if any.
func (h *hostile) garbage(c net.Conn) {
	var (
		payload []byte
		want    string // "" any well-formed NO or nothing
	)
	switch rand.N(5) {
	case 0: // random bytes
		payload = make([]byte, 1+rand.N(3000))
		for i := range payload {
			payload[i] = byte(rand.N(256))
		}
	case 1: // a field over 256 bytes
		payload, _ = protocol.AppendRequest(nil, protocol.Request{Login: strings.Repeat("L", 300), Password: "x", Service: "smtp"})
		want = protocol.ReplyTooLong
	case 2: // an empty login
		payload, _ = protocol.AppendRequest(nil, protocol.Request{Login: "", Password: "x", Service: "smtp"})
		want = protocol.ReplyNullLogin
	case 3: // a length of 65535 and a few bytes
		payload = []byte{0xff, 0xff, 'a', 'b', 'c'}
	default: // a valid request followed by more than the drain reads
		req, _ := protocol.AppendRequest(nil, goodRequest(beSasldb))
		payload = append(req, make([]byte, 128<<10)...)
		want = "OK"
	}
	_ = c.SetDeadline(time.Now().Add(h.bound))
	_, _ = c.Write(payload)
	_ = c.(*net.UnixConn).CloseWrite()
	reply, err := protocol.ReadReply(c)
	switch {
	case errors.Is(err, net.ErrClosed):
		// the phase ended: run closed the connection under the exchange
	case err != nil && (want == "" || want == "OK"):
		// the daemon closes after 64 KiB of drain; the reset may beat
		// the reply to the reader
		h.st.reply(kGarbage, "no reply")
	case err != nil:
		h.st.anomaly("no reply where " + want + " was due: " + err.Error())
	case want != "" && reply != want:
		h.st.anomaly("reply " + reply + " where " + want + " was due")
	case want == "OK":
		h.st.reply(kGarbage, "(request + 128 KiB) "+reply)
	case strings.HasPrefix(reply, "OK"):
		h.st.anomaly("OK to garbage")
	case !strings.HasPrefix(reply, "NO"):
		h.st.anomaly("malformed reply " + reply)
	default:
		h.st.reply(kGarbage, reply)
	}
}

// faultStats counts the requests of the PAM fault users.
type faultStats struct {
	mu      sync.Mutex
	n       map[string]int // "user: reply"
	maxLat  map[string]time.Duration
	bad     []string // an OK, no reply, or a reply after the bound
	total   int
	okCount int
}

func newFaultStats() *faultStats {
	return &faultStats{n: map[string]int{}, maxLat: map[string]time.Duration{}}
}

// faultLoop sends the fault users' requests: users crash, abort and exit
// kill their PAM worker; hang never returns until the daemon kills it.
func faultLoop(ctx context.Context, sock string, users []string, bound time.Duration, fs *faultStats) {
	c := &protocol.Client{Path: sock, Timeout: bound + 30*time.Second}
	for i := 0; ctx.Err() == nil; i++ {
		u := users[i%len(users)]
		t0 := time.Now()
		reply, err := c.Do(context.Background(), protocol.Request{Login: u, Password: "irrelevant", Service: "smtp"})
		d := time.Since(t0)
		fs.mu.Lock()
		fs.total++
		key := u + ": " + reply
		if err != nil {
			key = u + ": error"
			fs.bad = append(fs.bad, u+": "+err.Error())
		} else if strings.HasPrefix(reply, "OK") {
			fs.okCount++
			fs.bad = append(fs.bad, u+": OK from a crashing module")
		} else if d > bound {
			fs.bad = append(fs.bad, u+": answered after "+d.Round(time.Millisecond).String())
		}
		fs.n[key]++
		fs.maxLat[u] = max(fs.maxLat[u], d)
		fs.mu.Unlock()
	}
}
