package protocol_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// serveOne is a minimal saslauthd: it answers one connection the way
// spec §2.2 describes, accepting u1/Secret123 only.
func serveOne(ln net.Listener) {
	c, err := ln.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := protocol.NewReader(c)
	req, err := r.ReadRequest()
	var tooLong *protocol.FieldTooLongError
	switch {
	case errors.As(err, &tooLong):
		protocol.WriteReply(c, protocol.ReplyTooLong)
	case errors.Is(err, protocol.ErrNullLogin):
		protocol.WriteReply(c, protocol.ReplyNullLogin)
	case errors.Is(err, protocol.ErrNullPassword):
		protocol.WriteReply(c, protocol.ReplyNullPasswd)
	case err != nil:
		return // truncated or a read error: no reply, as saslauthd
	case req.Login == "u1" && req.Password == "Secret123":
		protocol.WriteReply(c, "OK")
	default:
		protocol.WriteReply(c, "NO Incorrect password")
	}
	c.(*net.UnixConn).CloseWrite()
	r.Drain(64 << 10)
}

func ExampleClient() {
	dir, err := os.MkdirTemp("", "saslgate")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("unix", filepath.Join(dir, "mux"))
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for range 3 {
			serveOne(ln)
		}
	}()

	c := &protocol.Client{Path: filepath.Join(dir, "mux"), Timeout: 5 * time.Second}
	for _, req := range []protocol.Request{
		{Login: "u1", Password: "Secret123", Service: "smtp"},
		{Login: "u1", Password: "wrong", Service: "smtp"},
		{Login: "u1", Password: strings.Repeat("x", 257), Service: "smtp"},
	} {
		reply, err := c.Do(context.Background(), req)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%q ok=%v\n", reply, strings.HasPrefix(reply, "OK"))
	}

	// A daemon that is not running, as testsaslauthd reports it.
	c.Path = filepath.Join(dir, "nothere")
	_, err = c.Do(context.Background(), protocol.Request{Login: "u1", Password: "Secret123"})
	fmt.Println(err)

	// Output:
	// "OK" ok=true
	// "NO Incorrect password" ok=false
	// "NO " ok=false
	// connect() : No such file or directory
}
