package protocol_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// readerTest is one ReadRequest case. The input is in followed by rest:
// ReadRequest must return want/wantErr, and rest is exactly what it must
// leave unread (what Drain then discards). For a field over MaxField, in
// ends with the offending length header: nothing after it is consumed.
type readerTest struct {
	name    string
	in      []byte
	rest    []byte
	want    protocol.Request
	wantErr error  // sentinel, matched with errors.Is
	tooLong string // if set, want *FieldTooLongError for this field
	tooLen  int    // and this Length
	// anyRest: an ignored fifth-field fragment may or may not have been
	// consumed; do not check how much is left.
	anyRest bool
}

var (
	a256 = rep("a", 256)
	a257 = rep("a", 257)
)

var readerTests = []readerTest{
	{
		name: "four fields",
		in:   wire("u1", "Secret123", "smtp", ""),
		want: protocol.Request{Login: "u1", Password: "Secret123", Service: "smtp"},
	},
	{
		name: "four fields with realm",
		in:   wire("erin", "Pw1", "imap", "example.com"),
		want: protocol.Request{Login: "erin", Password: "Pw1", Service: "imap", Realm: "example.com"},
	},
	{
		name: "empty service and realm allowed",
		in:   wire("u1", "Secret123", "", ""),
		want: protocol.Request{Login: "u1", Password: "Secret123"},
	},
	{
		name: "case 3: 256-byte login",
		in:   wire(a256, "x", "imap", ""),
		want: protocol.Request{Login: a256, Password: "x", Service: "imap"},
	},
	{
		name: "256 bytes in every field",
		in:   wire(rep("l", 256), rep("p", 256), rep("s", 256), rep("r", 256)),
		want: protocol.Request{Login: rep("l", 256), Password: rep("p", 256), Service: rep("s", 256), Realm: rep("r", 256)},
	},
	{
		name:    "case 4: 257-byte login",
		in:      hdr(257),
		rest:    cat([]byte(a257), wire("x", "imap", "")),
		tooLong: "login", tooLen: 257,
	},
	{
		name:    "case 5: 257-byte password",
		in:      cat(wire("u1"), hdr(257)),
		rest:    cat([]byte(a257), wire("smtp", "")),
		tooLong: "password", tooLen: 257,
	},
	{
		name:    "case 5: 257-byte service",
		in:      cat(wire("u1", "Secret123"), hdr(257)),
		rest:    cat([]byte(a257), wire("")),
		tooLong: "service", tooLen: 257,
	},
	{
		name:    "case 5: 257-byte realm",
		in:      cat(wire("u1", "Secret123", "smtp"), hdr(257)),
		rest:    []byte(a257),
		tooLong: "realm", tooLen: 257,
	},
	{
		name:    "257-byte realm, body never sent",
		in:      cat(wire("u1", "Secret123", "smtp"), hdr(257)),
		tooLong: "realm", tooLen: 257,
	},
	{
		name:    "case 6: length 0xFFFF then 10 bytes",
		in:      hdr(0xFFFF),
		rest:    []byte("0123456789"),
		tooLong: "login", tooLen: 0xFFFF,
	},
	{
		name:    "case 7: empty login",
		in:      wire("", "x", "smtp", ""),
		want:    protocol.Request{Password: "x", Service: "smtp"},
		wantErr: protocol.ErrNullLogin,
	},
	{
		name:    "case 8: empty password",
		in:      wire("u1", "", "smtp", ""),
		want:    protocol.Request{Login: "u1", Service: "smtp"},
		wantErr: protocol.ErrNullPassword,
	},
	{
		name:    "empty login and password: login wins",
		in:      wire("", "", "smtp", ""),
		want:    protocol.Request{Service: "smtp"},
		wantErr: protocol.ErrNullLogin,
	},
	{
		name:    "case 9: length checked before emptiness",
		in:      cat(wire("", "", "smtp"), hdr(257)),
		rest:    []byte(rep("r", 257)),
		tooLong: "realm", tooLen: 257,
	},
	{
		name:    "case 10: login NUL u1",
		in:      wire("\x00u1", "Secret123", "smtp", ""),
		want:    protocol.Request{Password: "Secret123", Service: "smtp"},
		wantErr: protocol.ErrNullLogin,
	},
	{
		name:    "password starting with NUL is empty",
		in:      wire("u1", "\x00Secret123", "smtp", ""),
		want:    protocol.Request{Login: "u1", Service: "smtp"},
		wantErr: protocol.ErrNullPassword,
	},
	{
		name: "case 11: password cut at NUL",
		in:   wire("u1", "Secret123\x00junk", "smtp", ""),
		want: protocol.Request{Login: "u1", Password: "Secret123", Service: "smtp"},
	},
	{
		name: "NUL cuts service and realm too",
		in:   wire("u1\x00x", "p", "smtp\x00x", "ex.com\x00\x00"),
		want: protocol.Request{Login: "u1", Password: "p", Service: "smtp", Realm: "ex.com"},
	},
	{
		name: "256-byte field with NUL at the end",
		in:   wire(rep("a", 255)+"\x00", "p", "", ""),
		want: protocol.Request{Login: rep("a", 255), Password: "p"},
	},
	{
		name: "case 18: five fields",
		in:   wire("u1", "Secret123", "smtp", "", "192.0.2.7;41234"),
		want: protocol.Request{Login: "u1", Password: "Secret123", Service: "smtp", ClientAddr: "192.0.2.7;41234", HasClientAddr: true},
	},
	{
		name: "five fields, empty client address",
		in:   wire("u1", "Secret123", "smtp", "", ""),
		want: protocol.Request{Login: "u1", Password: "Secret123", Service: "smtp", HasClientAddr: true},
	},
	{
		name: "five fields, 256-byte client address",
		in:   wire("u1", "Secret123", "smtp", "", rep("c", 256)),
		want: protocol.Request{Login: "u1", Password: "Secret123", Service: "smtp", ClientAddr: rep("c", 256), HasClientAddr: true},
	},
	{
		name: "five fields, IPv6 client address cut at NUL",
		in:   wire("u1", "p", "smtp", "", "2001:db8::1;993\x00x"),
		want: protocol.Request{Login: "u1", Password: "p", Service: "smtp", ClientAddr: "2001:db8::1;993", HasClientAddr: true},
	},
	{
		// 2.1.28 drains a fifth field without looking at it; an oversize
		// one does not spoil the four-field request.
		name:    "fifth field over MaxField is ignored",
		in:      cat(wire("u1", "Secret123", "smtp", ""), hdr(257)),
		rest:    []byte(rep("c", 257)),
		want:    protocol.Request{Login: "u1", Password: "Secret123", Service: "smtp"},
		anyRest: true,
	},
	{
		name:    "fifth field truncated by EOF is ignored",
		in:      cat(wire("u1", "Secret123", "smtp", ""), hdr(10), []byte("abc")),
		want:    protocol.Request{Login: "u1", Password: "Secret123", Service: "smtp"},
		anyRest: true,
	},
	{
		name:    "one stray byte after four fields, then EOF",
		in:      cat(wire("u1", "Secret123", "smtp", ""), []byte("\n")),
		want:    protocol.Request{Login: "u1", Password: "Secret123", Service: "smtp"},
		anyRest: true,
	},
	{
		name:    "empty login with five fields still reports the address",
		in:      wire("", "x", "smtp", "", "192.0.2.7;1"),
		want:    protocol.Request{Password: "x", Service: "smtp", ClientAddr: "192.0.2.7;1", HasClientAddr: true},
		wantErr: protocol.ErrNullLogin,
	},
	{
		name:    "case 21: empty connection",
		in:      nil,
		wantErr: protocol.ErrTruncated,
	},
	{
		name:    "case 13: one byte then EOF",
		in:      []byte{0},
		wantErr: protocol.ErrTruncated,
	},
	{
		name:    "case 14: three fields then EOF",
		in:      wire("u1", "Secret123", "smtp"),
		wantErr: protocol.ErrTruncated,
	},
	{
		name:    "body shorter than header",
		in:      cat(hdr(5), []byte("u1")),
		wantErr: protocol.ErrTruncated,
	},
}

// checkRead checks one ReadRequest result against tc.
func checkRead(t *testing.T, tc readerTest, got protocol.Request, err error) {
	t.Helper()
	if tc.tooLong != "" {
		var fe *protocol.FieldTooLongError
		if !errors.As(err, &fe) {
			t.Fatalf("err = %v, want *FieldTooLongError", err)
		}
		if fe.Field != tc.tooLong || fe.Length != tc.tooLen {
			t.Errorf("FieldTooLongError = {Field:%q Length:%d}, want {Field:%q Length:%d}", fe.Field, fe.Length, tc.tooLong, tc.tooLen)
		}
		if got != (protocol.Request{}) {
			t.Errorf("request = %#v, want zero on a too-long field", got)
		}
		return
	}
	if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
		t.Fatalf("err = %v, want %v", err, tc.wantErr)
	}
	if tc.wantErr == protocol.ErrTruncated {
		return
	}
	// Compare field by field: Request's formatting hides the password.
	if got.Login != tc.want.Login || got.Password != tc.want.Password ||
		got.Service != tc.want.Service || got.Realm != tc.want.Realm ||
		got.ClientAddr != tc.want.ClientAddr || got.HasClientAddr != tc.want.HasClientAddr {
		t.Errorf("request = {%q %q %q %q %q %v}, want {%q %q %q %q %q %v}",
			got.Login, got.Password, got.Service, got.Realm, got.ClientAddr, got.HasClientAddr,
			tc.want.Login, tc.want.Password, tc.want.Service, tc.want.Realm, tc.want.ClientAddr, tc.want.HasClientAddr)
	}
}

func TestReader_ReadRequest(t *testing.T) {
	for _, tc := range readerTests {
		t.Run(tc.name, func(t *testing.T) {
			r := protocol.NewReader(bytes.NewReader(cat(tc.in, tc.rest)))
			got, err := r.ReadRequest()
			checkRead(t, tc, got, err)
			// Nothing past the expected point was consumed.
			n, err := r.Drain(1 << 20)
			if err != nil {
				t.Errorf("Drain: %v", err)
			}
			if !tc.anyRest && n != int64(len(tc.rest)) {
				t.Errorf("Drain discarded %d bytes, want %d (ReadRequest consumed the wrong amount)", n, len(tc.rest))
			}
		})
	}
}

// TestReader_ReadRequestSocket runs the same table over a real AF_UNIX
// connection: the client writes the whole input in one write, as every
// real client does, and then half-closes.
func TestReader_ReadRequestSocket(t *testing.T) {
	for _, tc := range readerTests {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli := unixPair(t)
			if _, err := cli.Write(cat(tc.in, tc.rest)); err != nil {
				t.Fatal(err)
			}
			if err := cli.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			srv.SetDeadline(time.Now().Add(10 * guard)) // backstop only
			r := protocol.NewReader(srv)
			got, err := readWithin(t, r)
			checkRead(t, tc, got, err)
			n, err := drainWithin(t, r, 1<<20)
			if err != nil {
				t.Errorf("Drain: %v", err)
			}
			if !tc.anyRest && n != int64(len(tc.rest)) {
				t.Errorf("Drain discarded %d bytes, want %d", n, len(tc.rest))
			}
		})
	}
}

// TestReader_ReadRequestChunked feeds the table through readers that return
// one byte at a time and that return data together with io.EOF. With no
// bytes buffered after the fourth field and no socket to peek, the fifth
// field is not read; everything else must match.
func TestReader_ReadRequestChunked(t *testing.T) {
	wrappers := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{name: "OneByteReader", wrap: iotest.OneByteReader},
		{name: "DataErrReader", wrap: iotest.DataErrReader},
		{name: "HalfReader", wrap: iotest.HalfReader},
	}
	for _, w := range wrappers {
		for _, tc := range readerTests {
			t.Run(w.name+"/"+tc.name, func(t *testing.T) {
				r := protocol.NewReader(w.wrap(bytes.NewReader(cat(tc.in, tc.rest))))
				got, err := r.ReadRequest()
				if w.name == "OneByteReader" && tc.want.HasClientAddr {
					// Not buffered, not a socket: a fifth field stays unread.
					if got.HasClientAddr {
						t.Errorf("HasClientAddr = true from a one-byte reader")
					}
					got.ClientAddr, got.HasClientAddr = tc.want.ClientAddr, true
				}
				checkRead(t, tc, got, err)
			})
		}
	}
}

func TestReader_TruncatedEveryOffset(t *testing.T) {
	tests := []struct {
		name string
		req  []byte
	}{
		{name: "short fields", req: wire("u1", "Secret123", "smtp", "")},
		{name: "all fields set", req: wire("erin", "Pw1", "imap", "example.com")},
		{name: "empty fields", req: wire("", "", "", "")},
		{name: "256-byte fields", req: wire(a256, rep("p", 256), rep("s", 256), rep("r", 256))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i := range len(tc.req) {
				for _, w := range []struct {
					name string
					r    io.Reader
				}{
					{name: "bytes", r: bytes.NewReader(tc.req[:i])},
					{name: "one-byte", r: iotest.OneByteReader(bytes.NewReader(tc.req[:i]))},
					{name: "data+EOF", r: iotest.DataErrReader(bytes.NewReader(tc.req[:i]))},
				} {
					_, err := protocol.NewReader(w.r).ReadRequest()
					if !errors.Is(err, protocol.ErrTruncated) {
						t.Fatalf("%s: cut at %d of %d: err = %v, want ErrTruncated", w.name, i, len(tc.req), err)
					}
				}
			}
		})
	}
}

// TestReader_TruncatedSocket cuts a request at every offset over a real
// socket, the client half-closing after the partial write (cases 13, 14).
func TestReader_TruncatedSocket(t *testing.T) {
	req := wire("u1", "Secret123", "smtp", "ex")
	for i := range len(req) {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			srv, cli := unixPair(t)
			if _, err := cli.Write(req[:i]); err != nil {
				t.Fatal(err)
			}
			cli.CloseWrite()
			_, err := readWithin(t, protocol.NewReader(srv))
			if !errors.Is(err, protocol.ErrTruncated) {
				t.Fatalf("err = %v, want ErrTruncated", err)
			}
		})
	}
}

func TestReader_ReadErrorPassedThrough(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name string
		r    io.Reader
		want error
	}{
		{
			name: "error before any byte",
			r:    iotest.ErrReader(boom),
			want: boom,
		},
		{
			name: "error inside a field",
			r:    io.MultiReader(bytes.NewReader(wire("u1", "Secr")[:6]), iotest.ErrReader(boom)),
			want: boom,
		},
		{
			name: "timeout inside a header",
			r:    io.MultiReader(bytes.NewReader(wire("u1")[:1]), iotest.ErrReader(iotest.ErrTimeout)),
			want: iotest.ErrTimeout,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := protocol.NewReader(tc.r).ReadRequest()
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if errors.Is(err, protocol.ErrTruncated) {
				t.Errorf("a read error was reported as ErrTruncated")
			}
		})
	}
}

// TestReader_DeadlineSocket: a client that stops inside the request (case
// 15) is bounded by the caller's deadline, and the error says so.
func TestReader_DeadlineSocket(t *testing.T) {
	srv, cli := unixPair(t)
	if _, err := cli.Write(wire("u1", "Secret123", "smtp")); err != nil {
		t.Fatal(err)
	}
	srv.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := readWithin(t, protocol.NewReader(srv))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err = %v, want a timeout", err)
	}
}

// TestReader_FiveFieldsOneWrite is case 18 over a real socket: the client
// sends all five fields in one write and keeps the connection open.
func TestReader_FiveFieldsOneWrite(t *testing.T) {
	tests := []struct {
		name string
		addr string
	}{
		{name: "IPv4", addr: "192.0.2.7;41234"},
		{name: "IPv6", addr: "2001:db8::7;41234"},
		{name: "empty", addr: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli := unixPair(t)
			if _, err := cli.Write(wire("u1", "Secret123", "smtp", "", tc.addr)); err != nil {
				t.Fatal(err)
			}
			req, err := readWithin(t, protocol.NewReader(srv))
			if err != nil {
				t.Fatal(err)
			}
			if !req.HasClientAddr || req.ClientAddr != tc.addr {
				t.Errorf("ClientAddr, HasClientAddr = %q, %v; want %q, true", req.ClientAddr, req.HasClientAddr, tc.addr)
			}
			if req.Login != "u1" || req.Password != "Secret123" || req.Service != "smtp" || req.Realm != "" {
				t.Errorf("fields = %q %q %q %q", req.Login, req.Password, req.Service, req.Realm)
			}
		})
	}
}

// TestReader_FourFieldsClientWaits is case 19: a 2.1.28 client sends four
// fields and waits for the reply without closing. ReadRequest must not
// wait for a fifth field (the master-branch deadlock, spec §2.8).
func TestReader_FourFieldsClientWaits(t *testing.T) {
	tests := []struct {
		name string
		req  protocol.Request
	}{
		{name: "plain", req: protocol.Request{Login: "u1", Password: "Secret123", Service: "smtp"}},
		{name: "256-byte fields", req: protocol.Request{Login: a256, Password: a256, Service: a256, Realm: a256}},
		{name: "empty login", req: protocol.Request{Password: "x", Service: "smtp"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli := unixPair(t)
			b, err := protocol.AppendRequest(nil, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cli.Write(b); err != nil {
				t.Fatal(err)
			}
			var res readResult
			res.req, res.err = readWithin(t, protocol.NewReader(srv))
			if tc.req.Login == "" {
				if !errors.Is(res.err, protocol.ErrNullLogin) {
					t.Fatalf("err = %v, want ErrNullLogin", res.err)
				}
			} else if res.err != nil {
				t.Fatalf("err = %v", res.err)
			}
			if res.req.HasClientAddr {
				t.Errorf("HasClientAddr = true, client sent four fields")
			}
			if res.req.Login != tc.req.Login || res.req.Password != tc.req.Password {
				t.Errorf("login/password not as sent")
			}
		})
	}
}

// TestReader_PartialFifthFieldClientWaits: four fields plus a fragment of
// a fifth (here one stray byte, as a hand-written client appending "\n"
// would send) in one write, the client then waiting for its reply.
//
// Known bug (see the package report): queued() sees the stray byte, and
// field(4) then blocks in io.ReadFull for a second header byte that never
// comes, which is the very deadlock spec §2.8 describes. With a deadline
// set, ReadRequest swallows the timeout and returns a nil error after the
// deadline has passed, so the reply write then fails too.
func TestReader_PartialFifthFieldClientWaits(t *testing.T) {
	tests := []struct {
		name  string
		extra []byte
	}{
		{name: "one stray byte", extra: []byte("\n")},
		{name: "header only", extra: hdr(15)},
		{name: "short body", extra: cat(hdr(15), []byte("192.0"))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli := unixPair(t)
			if _, err := cli.Write(cat(wire("u1", "Secret123", "smtp", ""), tc.extra)); err != nil {
				t.Fatal(err)
			}
			_, err := readWithin(t, protocol.NewReader(srv))
			if err != nil {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

// TestReader_TwoRequestsOneWrite is case 17 with the whole server
// lifecycle of spec §2.2: read, reply, half-close, drain.
func TestReader_TwoRequestsOneWrite(t *testing.T) {
	srv, cli := unixPair(t)
	first := wire("u1", "Secret123", "smtp", "")
	second := wire("u2", "Other456", "imap", "")
	if _, err := cli.Write(cat(first, second)); err != nil {
		t.Fatal(err)
	}
	r := protocol.NewReader(srv)
	req, err := r.ReadRequest()
	if err != nil {
		t.Fatal(err)
	}
	if req.Login != "u1" || req.Password != "Secret123" || req.Service != "smtp" || req.Realm != "" {
		t.Fatalf("first request = %q %q %q %q", req.Login, req.Password, req.Service, req.Realm)
	}
	// Bytes queued after four fields are a fifth field only when they are
	// exactly one counted field; a second request is not taken for a client
	// address (it would show up as [remote=u2] in the log).
	consumed := len(first)
	if req.HasClientAddr {
		t.Errorf("ClientAddr = %q: the second request was read as a fifth field", req.ClientAddr)
	}
	if err := protocol.WriteReply(srv, "OK"); err != nil {
		t.Fatal(err)
	}
	if err := srv.CloseWrite(); err != nil {
		t.Fatal(err)
	}

	// The client gets exactly one reply, then EOF (case 16, 20).
	got := within(t, guard, "client read", func() []byte {
		b, _ := io.ReadAll(cli)
		return b
	})
	if want := "\x00\x02OK"; string(got) != want {
		t.Errorf("client received %q, want %q", got, want)
	}
	cli.Close()

	n, err := drainWithin(t, r, 1<<20)
	if err != nil {
		t.Errorf("Drain: %v", err)
	}
	if want := int64(len(first) + len(second) - consumed); n != want {
		t.Errorf("Drain discarded %d bytes, want %d", n, want)
	}
}

func TestReader_DrainLimit(t *testing.T) {
	// ReadRequest stops right after this oversize login header, so
	// everything after it is left for Drain.
	req := hdr(257)
	tests := []struct {
		name    string
		rest    int
		limit   int64
		wantN   int64
		wantErr bool
	}{
		{name: "less than limit", rest: 100, limit: 1000, wantN: 100},
		{name: "nothing left", rest: 0, limit: 1000, wantN: 0},
		{name: "over limit", rest: 10000, limit: 10, wantN: 10, wantErr: true},
		{name: "over limit, beyond the read buffer", rest: 100000, limit: 9000, wantN: 9000, wantErr: true},
		{name: "one over limit", rest: 11, limit: 10, wantN: 10, wantErr: true},
		// Drain cannot tell "exactly limit bytes, then EOF" from "more to
		// come" without reading one byte more; it reports the limit.
		{name: "exactly limit", rest: 10, limit: 10, wantN: 10, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := protocol.NewReader(bytes.NewReader(cat(req, bytes.Repeat([]byte{'z'}, tc.rest))))
			var fe *protocol.FieldTooLongError
			if _, err := r.ReadRequest(); !errors.As(err, &fe) {
				t.Fatalf("ReadRequest: %v", err)
			}
			n, err := r.Drain(tc.limit)
			if n != tc.wantN {
				t.Errorf("n = %d, want %d", n, tc.wantN)
			}
			if (err != nil) != tc.wantErr {
				t.Errorf("err = %v, want error: %v", err, tc.wantErr)
			}
		})
	}
}

// TestReader_DrainLimitSocket: a client that never stops sending cannot
// keep Drain busy beyond its limit.
func TestReader_DrainLimitSocket(t *testing.T) {
	srv, cli := unixPair(t)
	if _, err := cli.Write(wire("u1", "Secret123", "smtp", "")); err != nil {
		t.Fatal(err)
	}
	r := protocol.NewReader(srv)
	if _, err := r.ReadRequest(); err != nil {
		t.Fatal(err)
	}
	go func() {
		junk := bytes.Repeat([]byte{0xff}, 4096)
		for {
			if _, err := cli.Write(junk); err != nil {
				return
			}
		}
	}()
	const limit = 64 << 10
	n, err := drainWithin(t, r, limit)
	if n != limit || err == nil {
		t.Errorf("Drain = %d, %v; want %d and an error", n, err, limit)
	}
	srv.Close() // stops the writer
}

func TestFieldTooLongError_Error(t *testing.T) {
	tests := []struct {
		field  string
		length int
		want   string
	}{
		{field: "login", length: 257, want: "login exceeded MAX_REQ_LEN: 256"},
		{field: "password", length: 0xFFFF, want: "password exceeded MAX_REQ_LEN: 256"},
		{field: "service", length: 300, want: "service exceeded MAX_REQ_LEN: 256"},
		{field: "realm", length: 257, want: "realm exceeded MAX_REQ_LEN: 256"},
	}
	for _, tc := range tests {
		t.Run(tc.field, func(t *testing.T) {
			msg := (&protocol.FieldTooLongError{Field: tc.field, Length: tc.length}).Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("Error() = %q, want it to contain saslauthd's log text %q", msg, tc.want)
			}
		})
	}
}

// TestRequest_FormatHidesPassword: no usual way of printing a Request shows
// the password.
func TestRequest_FormatHidesPassword(t *testing.T) {
	const pw = "Secret123-sentinel"
	req := protocol.Request{Login: "u1", Password: pw, Service: "smtp", Realm: "example.com", ClientAddr: "192.0.2.7;1", HasClientAddr: true}
	type holder struct{ Req protocol.Request }
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%50v"} {
		for _, arg := range []struct {
			name string
			v    any
		}{
			{name: "value", v: req},
			{name: "pointer", v: &req},
			{name: "in exported field", v: holder{req}},
			{name: "in slice", v: []protocol.Request{req}},
		} {
			out := fmt.Sprintf(verb, arg.v)
			if strings.Contains(out, pw) || strings.Contains(strings.ToLower(out), hex.EncodeToString([]byte(pw))) {
				t.Errorf("Sprintf(%q, %s) = %q shows the password", verb, arg.name, out)
			}
			if verb == "%v" && arg.name == "value" && !strings.Contains(out, "u1") {
				t.Errorf("Sprintf(%%v) = %q lost the login", out)
			}
		}
	}
	// String, GoString and slog's text form.
	for name, out := range map[string]string{
		"String":   req.String(),
		"GoString": req.GoString(),
		"Sprint":   fmt.Sprint(req),
		"Sprintln": fmt.Sprintln(req),
		"slog text": func() string {
			var b strings.Builder
			slog.New(slog.NewTextHandler(&b, nil)).Info("req", "req", req)
			return b.String()
		}(),
		"error wrap": fmt.Errorf("bad request %v: %w", req, protocol.ErrNullLogin).Error(),
	} {
		if strings.Contains(out, pw) {
			t.Errorf("%s = %q shows the password", name, out)
		}
	}
}

// TestRequest_FormatKnownLeaks documents ways the password still escapes.
// The comment in protocol.go says "GoString and Format keep the password
// out", but there is no Format method (so %d and other non-string verbs
// print the raw fields), and nothing stops encoding/json, which
// slog.JSONHandler uses.
func TestRequest_FormatKnownLeaks(t *testing.T) {
	const pw = "Secret123-sentinel"
	req := protocol.Request{Login: "u1", Password: pw, Service: "smtp"}
	verb := "%d" // not a constant: go vet would rightly object to %d on a struct
	var js strings.Builder
	slog.New(slog.NewJSONHandler(&js, nil)).Info("req", "req", req)
	for name, out := range map[string]string{
		"%d":   fmt.Sprintf(verb, req),
		"JSON": js.String(),
	} {
		if strings.Contains(out, pw) {
			t.Errorf("%s = %q shows the password", name, out)
		}
	}
}

func TestAppendRequest(t *testing.T) {
	tests := []struct {
		name    string
		req     protocol.Request
		want    []byte
		wantErr bool
	}{
		{
			name: "four fields",
			req:  protocol.Request{Login: "u1", Password: "Secret123", Service: "smtp"},
			want: []byte("\x00\x02u1\x00\x09Secret123\x00\x04smtp\x00\x00"),
		},
		{
			name: "five fields",
			req:  protocol.Request{Login: "u1", Password: "Secret123", Service: "smtp", ClientAddr: "192.0.2.7;41234", HasClientAddr: true},
			want: []byte("\x00\x02u1\x00\x09Secret123\x00\x04smtp\x00\x00\x00\x0f192.0.2.7;41234"),
		},
		{
			name: "client address without HasClientAddr is not sent",
			req:  protocol.Request{Login: "u1", Password: "p", ClientAddr: "192.0.2.7;1"},
			want: []byte("\x00\x02u1\x00\x01p\x00\x00\x00\x00"),
		},
		{
			name: "empty fifth field",
			req:  protocol.Request{Login: "u1", Password: "p", HasClientAddr: true},
			want: []byte("\x00\x02u1\x00\x01p\x00\x00\x00\x00\x00\x00"),
		},
		{
			name: "NULs sent as given",
			req:  protocol.Request{Login: "\x00u1", Password: "Secret123\x00junk"},
			want: []byte("\x00\x03\x00u1\x00\x0eSecret123\x00junk\x00\x00\x00\x00"),
		},
		{
			name: "65535-byte field",
			req:  protocol.Request{Login: "u", Password: rep("p", 0xFFFF)},
			want: cat(wire("u"), []byte{0xff, 0xff}, []byte(rep("p", 0xFFFF)), wire("", "")),
		},
		{
			name:    "65536-byte field",
			req:     protocol.Request{Login: "u", Realm: rep("r", 0x10000)},
			wantErr: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("keep")
			got, err := protocol.AppendRequest(bytes.Clone(prefix), tc.req)
			if tc.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(got, prefix) {
				t.Fatalf("AppendRequest overwrote dst")
			}
			if got := got[len(prefix):]; !bytes.Equal(got, tc.want) {
				t.Errorf("AppendRequest = %q, want %q", got, tc.want)
			}
		})
	}
}

// replyCatalogue is every reply string of spec §2.6 with its length as the
// spec gives it (0 where the spec says "var"; an example is used there).
var replyCatalogue = []struct {
	text string
	len  int
}{
	{text: "OK", len: 2},
	{text: protocol.ReplyTooLong, len: 3},
	{text: protocol.ReplyNullLogin, len: 22},
	{text: protocol.ReplyNullPasswd, len: 25},
	{text: "NO internal mechanism failure", len: 29},
	{text: "NO", len: 2},
	{text: "NO PAM start error", len: 18},
	{text: "NO PAM auth error", len: 17},
	{text: "NO PAM acct error", len: 17},
	{text: "NO Invalid username", len: 19},
	{text: "NO Username lookup failure: Permission denied"},
	{text: "NO Invalid shadow username", len: 26},
	{text: "NO Username shadow lookup failure: Input/output error"},
	{text: "NO Insufficient permission to access NIS authentication database (saslauthd)", len: 76},
	{text: "NO Incorrect password", len: 21},
	{text: "NO Account expired", len: 18},
	{text: "NO Password expired", len: 19},
	{text: "OK remote authentication successful", len: 35},
	{text: "NO remote server rejected your credentials", len: 42},
	{text: "NO [ALERT] Couldn't contact remote authentication server", len: 56},
	{text: "NO [ALERT] The remote authentication server is currently unavailable", len: 68},
	{text: "NO [ALERT] Unexpected response from remote authentication server", len: 64},
	{text: "NO [ALERT] error synchronizing with remote authentication server", len: 64},
	{text: "NO [ALERT] saslauthd internal error", len: 35},
	{text: "NO [ALERT] No address given", len: 27},
	{text: "NO Forbidden"},
	{text: "NO krb5_get_init_creds_password failed"},
	{text: "NO krb5_verify_init_creds failed"},
	{text: "NO saslauthd internal error"},
	{text: "NO saslauthd principal name error"},
	{text: "NO saslauthd NULL password or username"},
}

// countingWriter records each Write separately.
type countingWriter struct{ writes [][]byte }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

func TestWriteReply_Catalogue(t *testing.T) {
	for _, tc := range replyCatalogue {
		t.Run(tc.text, func(t *testing.T) {
			if tc.len != 0 && len(tc.text) != tc.len {
				t.Fatalf("len(%q) = %d, spec says %d", tc.text, len(tc.text), tc.len)
			}
			want := append([]byte{byte(len(tc.text) >> 8), byte(len(tc.text))}, tc.text...)

			if got := protocol.AppendReply(nil, tc.text); !bytes.Equal(got, want) {
				t.Errorf("AppendReply = %q, want %q", got, want)
			}
			if got := protocol.AppendReply([]byte("x"), tc.text); !bytes.Equal(got, append([]byte("x"), want...)) {
				t.Errorf("AppendReply with prefix = %q", got)
			}

			var w countingWriter
			if err := protocol.WriteReply(&w, tc.text); err != nil {
				t.Fatal(err)
			}
			if len(w.writes) != 1 {
				t.Fatalf("WriteReply made %d writes, want 1", len(w.writes))
			}
			if !bytes.Equal(w.writes[0], want) {
				t.Errorf("WriteReply wrote %q, want %q", w.writes[0], want)
			}
			if bytes.IndexByte(w.writes[0][2:], 0) >= 0 {
				t.Errorf("reply text carries a NUL")
			}

			got, err := protocol.ReadReply(bytes.NewReader(want))
			if err != nil || got != tc.text {
				t.Errorf("ReadReply = %q, %v; want %q", got, err, tc.text)
			}
		})
	}
}

func TestWriteReply_Exact(t *testing.T) {
	tests := []struct {
		name string
		text string
		want string
	}{
		{name: "too long", text: protocol.ReplyTooLong, want: "\x00\x03NO "},
		{name: "null login", text: protocol.ReplyNullLogin, want: "\x00\x16NO NULL login received"},
		{name: "null password", text: protocol.ReplyNullPasswd, want: "\x00\x19NO NULL password received"},
		{name: "OK", text: "OK", want: "\x00\x02OK"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := protocol.WriteReply(&b, tc.text); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("wire = %q, want %q", b.String(), tc.want)
			}
		})
	}
	if len(protocol.ReplyTooLong) != 3 || len(protocol.ReplyNullLogin) != 22 || len(protocol.ReplyNullPasswd) != 25 {
		t.Errorf("reply constant lengths = %d, %d, %d; want 3, 22, 25",
			len(protocol.ReplyTooLong), len(protocol.ReplyNullLogin), len(protocol.ReplyNullPasswd))
	}
}

func TestWriteReply_CutToMaxReply(t *testing.T) {
	tests := []struct {
		name    string
		textLen int
		wireLen int
	}{
		{name: "MaxReply-1", textLen: protocol.MaxReply - 1, wireLen: protocol.MaxReply - 1},
		{name: "MaxReply", textLen: protocol.MaxReply, wireLen: protocol.MaxReply},
		{name: "MaxReply+1", textLen: protocol.MaxReply + 1, wireLen: protocol.MaxReply},
		{name: "64 KiB", textLen: 1 << 16, wireLen: protocol.MaxReply},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := "NO " + rep("x", tc.textLen-3)
			want := append([]byte{byte(tc.wireLen >> 8), byte(tc.wireLen)}, text[:tc.wireLen]...)
			if got := protocol.AppendReply(nil, text); !bytes.Equal(got, want) {
				t.Errorf("AppendReply: got %d bytes, header %x; want %d bytes, header %x", len(got), got[:2], len(want), want[:2])
			}
			var b bytes.Buffer
			if err := protocol.WriteReply(&b, text); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b.Bytes(), want) {
				t.Errorf("WriteReply: got %d bytes, want %d", b.Len(), len(want))
			}
		})
	}
}

// TestWriteReply_Socket is case 20 over a real socket: the client reads
// exactly 2+len bytes before EOF.
func TestWriteReply_Socket(t *testing.T) {
	for _, tc := range replyCatalogue {
		t.Run(tc.text, func(t *testing.T) {
			srv, cli := unixPair(t)
			if err := protocol.WriteReply(srv, tc.text); err != nil {
				t.Fatal(err)
			}
			srv.CloseWrite()
			got := within(t, guard, "client read", func() []byte {
				b, _ := io.ReadAll(cli)
				return b
			})
			if len(got) != 2+len(tc.text) || string(got[2:]) != tc.text {
				t.Errorf("client read %q (%d bytes), want %d bytes", got, len(got), 2+len(tc.text))
			}
		})
	}
}

func BenchmarkReadRequest(b *testing.B) {
	benchmarks := []struct {
		name string
		in   []byte
	}{
		{name: "4 fields", in: wire("u1", "Secret123", "smtp", "example.com")},
		{name: "5 fields", in: wire("u1", "Secret123", "smtp", "example.com", "192.0.2.7;41234")},
		{name: "256-byte fields", in: wire(a256, a256, a256, a256)},
		{name: "too long", in: cat(hdr(257), []byte(a257))},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			b.SetBytes(int64(len(bm.in)))
			b.ReportAllocs()
			br := bytes.NewReader(bm.in)
			for b.Loop() {
				br.Reset(bm.in)
				_, _ = protocol.NewReader(br).ReadRequest()
			}
		})
	}
}

// Settled says whether a connection can be closed without a drain: only
// when nothing of the client's is left unread.
func TestReader_Settled(t *testing.T) {
	req := wire("u1", "Secret123", "smtp", "")
	for _, tc := range []struct {
		name  string
		extra []byte // sent after the request, before Settled
		close bool   // the client closes first
		want  bool
	}{
		{"client waits", nil, false, true},
		{"client closed", nil, true, true},
		{"second request", wire("u2", "x", "imap", ""), false, false},
		{"stray byte", []byte{0}, false, false},
		{"stray byte then close", []byte{0}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli := unixPair(t)
			if _, err := cli.Write(req); err != nil {
				t.Fatal(err)
			}
			r := protocol.NewReader(srv)
			if _, err := r.ReadRequest(); err != nil {
				t.Fatal(err)
			}
			if len(tc.extra) > 0 {
				if _, err := cli.Write(tc.extra); err != nil {
					t.Fatal(err)
				}
			}
			if tc.close {
				cli.Close()
			}
			if got := r.Settled(); got != tc.want {
				t.Fatalf("Settled() = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("bytes in the buffer", func(t *testing.T) {
		srv, cli := unixPair(t)
		// one write: the reader's buffer takes both requests at once
		if _, err := cli.Write(cat(req, wire("u2", "x", "imap", ""))); err != nil {
			t.Fatal(err)
		}
		r := protocol.NewReader(srv)
		if _, err := r.ReadRequest(); err != nil {
			t.Fatal(err)
		}
		if r.Settled() {
			t.Fatal("Settled with a second request in the buffer")
		}
	})
	t.Run("not a socket", func(t *testing.T) {
		r := protocol.NewReader(bytes.NewReader(req))
		if _, err := r.ReadRequest(); err != nil {
			t.Fatal(err)
		}
		if r.Settled() {
			t.Fatal("Settled on a plain reader: it cannot tell")
		}
	})
}

// TestReaderQueued: the bytes an acceptor read come first; with drained
// set a fifth field is taken from them alone; Reset reads the next
// connection with nothing of the last one left.
func TestReaderQueued(t *testing.T) {
	four := wire("u1", "Secret123", "smtp", "")
	five := wire("u1", "Secret123", "smtp", "", "192.0.2.7;41234")
	addr := wire("192.0.2.7;41234")
	tests := []struct {
		name     string
		queued   []byte
		rest     []byte
		drained  bool
		wantAddr bool
	}{
		{"all queued, five fields", five, nil, true, true},
		{"all queued, four fields", four, nil, true, false},
		{"part queued, the rest on the connection", four[:5], four[5:], false, false},
		{"nothing queued", nil, five, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd := protocol.NewReaderQueued(bytes.NewReader(tt.rest), tt.queued, tt.drained)
			got, err := rd.ReadRequest()
			if err != nil {
				t.Fatal(err)
			}
			if got.Login != "u1" || got.Password != "Secret123" || got.Service != "smtp" || got.HasClientAddr != tt.wantAddr {
				t.Fatalf("got %#v, want the request with client address %v", got, tt.wantAddr)
			}
		})
	}

	// A fifth field on the socket after the queued bytes is looked for
	// only when the queued bytes did not drain the socket.
	for _, drained := range []bool{true, false} {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fds[0]), "server")
		conn, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		defer syscall.Close(fds[1])
		if _, err := syscall.Write(fds[1], addr); err != nil {
			t.Fatal(err)
		}
		got, err := protocol.NewReaderQueued(conn, four, drained).ReadRequest()
		if err != nil || got.HasClientAddr == drained {
			t.Errorf("drained=%v: client address taken = %v (%v)", drained, got.HasClientAddr, err)
		}
	}

	rd := protocol.NewReaderQueued(bytes.NewReader(nil), append(four, "junk"...), true)
	if _, err := rd.ReadRequest(); err != nil {
		t.Fatal(err)
	}
	rd.Reset(bytes.NewReader(nil), wire("u2", "Other456", "imap", ""), true)
	got, err := rd.ReadRequest()
	if err != nil || got.Login != "u2" || got.Password != "Other456" || got.Service != "imap" || got.HasClientAddr {
		t.Fatalf("after Reset: %#v, %v", got, err)
	}
	if n, err := rd.Drain(1 << 10); n != 0 || err != nil {
		t.Fatalf("after Reset, %d bytes of the last connection left (%v)", n, err)
	}
}
