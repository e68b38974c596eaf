package pam

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestFrameRoundTrip(t *testing.T) {
	r := txnRequest{Service: "smtp", Login: "alice", Password: "s3cret\x00x", RHost: "192.0.2.7", ConfDir: "/tmp/pam.d"}
	p, err := encodeRequest(&r)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeFrame(&buf, p); err != nil {
		t.Fatal(err)
	}
	got, err := readFrame(&buf)
	if err != nil {
		t.Fatal(err)
	}
	back, err := decodeRequest(got)
	if err != nil || back != r {
		t.Fatalf("got %+v, %v; want %+v", back, err, r)
	}
	if _, err := readFrame(&buf); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}

	res := txnResult{Stage: stageAcct, Code: 13, Msg: strings.Repeat("m", maxMessage+10)}
	back2, err := decodeResult(encodeResult(res))
	if err != nil || back2.Stage != stageAcct || back2.Code != 13 || len(back2.Msg) != maxMessage {
		t.Fatalf("result: %+v, %v", back2, err)
	}
}

func TestFrameLimits(t *testing.T) {
	if _, err := encodeRequest(&txnRequest{Password: strings.Repeat("p", maxField+1)}); err == nil {
		t.Fatal("an oversized field was encoded")
	}
	max := txnRequest{}
	for _, f := range []*string{&max.Service, &max.Login, &max.Password, &max.RHost, &max.ConfDir} {
		*f = strings.Repeat("x", maxField)
	}
	p, err := encodeRequest(&max)
	if err != nil || len(p) > maxFrame {
		t.Fatalf("largest request: %d bytes, %v", len(p), err)
	}
	if err := writeFrame(io.Discard, make([]byte, maxFrame+1)); err == nil {
		t.Fatal("an oversized frame was written")
	}
	if _, err := readFrame(bytes.NewReader([]byte{0, 1, 0, 0, 0})); !errors.Is(err, errFrame) {
		t.Fatalf("oversized length: %v", err)
	}
	if _, err := readFrame(bytes.NewReader([]byte{0, 0, 0, 5, 1})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short frame: %v", err)
	}
	if _, err := readFrame(bytes.NewReader([]byte{0, 0})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short header: %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	good, _ := encodeRequest(&txnRequest{Login: "a", Password: "b"})
	for name, p := range map[string][]byte{
		"empty":         {},
		"wrong version": append([]byte{9}, good[1:]...),
		"truncated":     good[:len(good)-1],
		"trailing":      append(append([]byte{}, good...), 0),
		"long string":   {protoVersion, 0xff, 0xff},
	} {
		if _, err := decodeRequest(p); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	for name, p := range map[string][]byte{
		"empty":         {},
		"unknown stage": encodeResult(txnResult{Stage: stageMax}),
		"trailing":      append(encodeResult(txnResult{}), 1),
	} {
		if _, err := decodeResult(p); err == nil {
			t.Errorf("result %s: decoded", name)
		}
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := encodeRequest(&txnRequest{Service: "imap", Login: "u", Password: "p", RHost: "::1"})
	f.Add(good)
	f.Add(encodeResult(txnResult{Stage: stageAuth, Code: 7, Msg: "Authentication failure"}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		if r, err := decodeRequest(p); err == nil {
			again, err := encodeRequest(&r)
			if err != nil || !bytes.Equal(again, p) {
				t.Fatalf("request %q decoded to %+v, encodes to %q (%v)", p, r, again, err)
			}
		}
		if r, err := decodeResult(p); err == nil && r.Stage >= stageMax {
			t.Fatalf("stage %d accepted", r.Stage)
		}
		var buf bytes.Buffer
		buf.Write(p)
		_, _ = readFrame(&buf)
	})
}

func TestLimiter(t *testing.T) {
	l := limiter{tokens: 2, burst: 2, rate: 1}
	now := time.Unix(1000, 0)
	for i := range 2 {
		if ok, _ := l.take(now); !ok {
			t.Fatalf("take %d refused within the burst", i)
		}
	}
	ok, wait := l.take(now)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("past the burst: %v, wait %v", ok, wait)
	}
	if ok, _ := l.take(now.Add(500 * time.Millisecond)); ok {
		t.Fatal("half a token spent")
	}
	if ok, _ := l.take(now.Add(1100 * time.Millisecond)); !ok {
		t.Fatal("refilled token refused")
	}
	// a long pause refills to the burst, not beyond
	later := now.Add(time.Hour)
	for i := range 2 {
		if ok, _ := l.take(later); !ok {
			t.Fatalf("take %d after a pause refused", i)
		}
	}
	if ok, _ := l.take(later); ok {
		t.Fatal("the bucket grew past its burst")
	}
}

func TestRhostOf(t *testing.T) {
	for in, want := range map[string]string{
		"":                "",
		"192.0.2.1;25":    "192.0.2.1",
		"2001:db8::2;587": "2001:db8::2",
		"host":            "host",
		";1":              "",
	} {
		if got := rhost(in); got != want {
			t.Errorf("rhost(%q) = %q, want %q", in, got, want)
		}
	}
}
