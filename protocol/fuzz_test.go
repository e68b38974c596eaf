package protocol_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/saslgate/saslgate/protocol"
)

// requestSeeds are the wire bytes of spec §13 cases 3–11, 17 and 18.
func requestSeeds() [][]byte {
	req := func(f ...string) []byte {
		r := protocol.Request{Login: f[0], Password: f[1], Service: f[2], Realm: f[3]}
		if len(f) == 5 {
			r.ClientAddr, r.HasClientAddr = f[4], true
		}
		b, err := protocol.AppendRequest(nil, r)
		if err != nil {
			panic(err)
		}
		return b
	}
	r257 := strings.Repeat("r", 257)
	return [][]byte{
		req(strings.Repeat("a", 256), "x", "imap", ""),                                   // 3: 256-byte login accepted
		req(strings.Repeat("a", 257), "x", "imap", ""),                                   // 4: 257-byte login
		req("u1", strings.Repeat("p", 257), "smtp", ""),                                  // 5: 257-byte password
		req("u1", "Secret123", strings.Repeat("s", 257), ""),                             // 5: 257-byte service
		req("u1", "Secret123", "smtp", r257),                                             // 5: 257-byte realm
		append([]byte{0xff, 0xff}, "0123456789"...),                                      // 6: length 0xFFFF, 10 bytes
		req("", "x", "smtp", ""),                                                         // 7: empty login
		req("u1", "", "smtp", ""),                                                        // 8: empty password
		req("", "", "smtp", r257),                                                        // 9: length before emptiness
		req("\x00u1", "Secret123", "smtp", ""),                                           // 10: NUL login
		req("u1", "Secret123\x00junk", "smtp", ""),                                       // 11: NUL in password
		append(req("u1", "Secret123", "smtp", ""), req("u2", "Other456", "imap", "")...), // 17
		req("u1", "Secret123", "smtp", "", "192.0.2.7;41234"),                            // 18
	}
}

func hasNUL(r protocol.Request) bool {
	return strings.ContainsRune(r.Login+r.Password+r.Service+r.Realm+r.ClientAddr, 0)
}

func FuzzReadRequest(f *testing.F) {
	for _, s := range requestSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := protocol.NewReader(bytes.NewReader(in)).ReadRequest()

		// The only errors an in-memory reader can produce.
		var fe *protocol.FieldTooLongError
		switch {
		case err == nil:
			if got.Login == "" || got.Password == "" {
				t.Fatalf("empty login or password accepted")
			}
		case errors.Is(err, protocol.ErrTruncated):
		case errors.Is(err, protocol.ErrNullLogin):
			if got.Login != "" {
				t.Fatalf("ErrNullLogin with login %q", got.Login)
			}
		case errors.Is(err, protocol.ErrNullPassword):
			if got.Login == "" || got.Password != "" {
				t.Fatalf("ErrNullPassword with login %q, password %q", got.Login, got.Password)
			}
		case errors.As(err, &fe):
			if fe.Length <= protocol.MaxField || fe.Length > 0xFFFF {
				t.Fatalf("FieldTooLongError with length %d", fe.Length)
			}
			switch fe.Field {
			case "login", "password", "service", "realm":
			default:
				t.Fatalf("FieldTooLongError for field %q", fe.Field)
			}
			if got != (protocol.Request{}) {
				t.Fatalf("non-zero request with FieldTooLongError")
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}
		if err != nil && !errors.Is(err, protocol.ErrNullLogin) && !errors.Is(err, protocol.ErrNullPassword) {
			return
		}

		for _, field := range []string{got.Login, got.Password, got.Service, got.Realm, got.ClientAddr} {
			if len(field) > protocol.MaxField {
				t.Fatalf("field of %d bytes accepted", len(field))
			}
		}
		if hasNUL(got) {
			t.Fatalf("field with a NUL accepted")
		}
		if got.ClientAddr != "" && !got.HasClientAddr {
			t.Fatalf("ClientAddr %q without HasClientAddr", got.ClientAddr)
		}

		// A one-byte reader gives the same four fields and the same error;
		// with nothing buffered and no socket it never sees a fifth field.
		slow, slowErr := protocol.NewReader(iotest.OneByteReader(bytes.NewReader(in))).ReadRequest()
		if !errors.Is(slowErr, err) || (err == nil) != (slowErr == nil) {
			t.Fatalf("one-byte reader: err = %v, want %v", slowErr, err)
		}
		if slow.Login != got.Login || slow.Password != got.Password || slow.Service != got.Service ||
			slow.Realm != got.Realm || slow.HasClientAddr {
			t.Fatalf("one-byte reader read a different request")
		}

		if err != nil {
			return
		}
		// Round trip: the request, written again, reads back the same.
		b, aerr := protocol.AppendRequest(nil, got)
		if aerr != nil {
			t.Fatalf("AppendRequest: %v", aerr)
		}
		again, err := protocol.NewReader(bytes.NewReader(b)).ReadRequest()
		if err != nil {
			t.Fatalf("re-read: %v", err)
		}
		if again != got {
			t.Fatalf("round trip changed the request")
		}
		if len(b) > len(in) {
			t.Fatalf("re-encoded request (%d bytes) longer than the input (%d)", len(b), len(in))
		}
	})
}

func FuzzReadReply(f *testing.F) {
	for _, tc := range replyCatalogue {
		f.Add(protocol.AppendReply(nil, tc.text))
	}
	for _, s := range []string{"", "\x00", "\x00\x00", "\x00\x01N", "\x00\x02O", "\x00\x03NO", "\xff\xffNO"} {
		f.Add([]byte(s))
	}
	f.Add(append([]byte{0x04, 0x00}, bytes.Repeat([]byte{'x'}, 1024)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := protocol.ReadReply(bytes.NewReader(in))
		if len(in) < 2 {
			if !errors.Is(err, protocol.ErrSizeRead) {
				t.Fatalf("%d-byte input: err = %v, want ErrSizeRead", len(in), err)
			}
			return
		}
		n := int(in[0])<<8 | int(in[1])
		body := in[2:]
		switch {
		case n < 2:
			if !errors.Is(err, protocol.ErrBadResponse) {
				t.Fatalf("length %d: err = %v, want ErrBadResponse", n, err)
			}
			return
		case len(body) < min(n, protocol.MaxReply):
			if !errors.Is(err, protocol.ErrRead) {
				t.Fatalf("length %d, %d body bytes: err = %v, want ErrRead", n, len(body), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("err = %v", err)
		}
		if want := string(body[:min(n, protocol.MaxReply)]); got != want {
			t.Fatalf("reply = %q, want %q", got, want)
		}
		// Round trip through the writer.
		again, err := protocol.ReadReply(bytes.NewReader(protocol.AppendReply(nil, got)))
		if err != nil || again != got {
			t.Fatalf("round trip: %q, %v", again, err)
		}
	})
}

// errStall is what a connection that has nothing more to give returns in
// FuzzReady: reading past what Ready looked at is the failure.
var errStall = errors.New("stalled: read past the queued bytes")

type stallReader struct{}

func (stallReader) Read([]byte) (int, error) { return 0, errStall }

// FuzzReady: Ready says true exactly when ReadRequest, given those bytes
// queued and nothing after them, returns without reading more; and what
// it returns then is what it reads from the whole input (four fields and
// the error; a fifth field may legitimately come later).
func FuzzReady(f *testing.F) {
	for _, s := range requestSeeds() {
		f.Add(s, uint16(len(s)))
		f.Add(s, uint16(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, in []byte, cut uint16) {
		q := in[:min(int(cut), len(in), 4096)]
		ready := protocol.Ready(q)
		got, err := protocol.NewReaderQueued(stallReader{}, q, cut%2 == 0).ReadRequest()
		if stalled := errors.Is(err, errStall); stalled == ready {
			t.Fatalf("Ready(%d bytes) = %v, but ReadRequest stalled = %v (err %v)", len(q), ready, stalled, err)
		}
		if !ready {
			return
		}
		whole, werr := protocol.NewReader(bytes.NewReader(in)).ReadRequest()
		if !errors.Is(err, werr) || (err == nil) != (werr == nil) {
			var a, b *protocol.FieldTooLongError
			if !errors.As(err, &a) || !errors.As(werr, &b) || *a != *b {
				t.Fatalf("queued: err = %v, whole input: %v", err, werr)
			}
		}
		if got.Login != whole.Login || got.Password != whole.Password || got.Service != whole.Service || got.Realm != whole.Realm {
			t.Fatalf("queued bytes read a different request")
		}
	})
}
