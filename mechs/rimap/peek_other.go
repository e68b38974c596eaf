//go:build !unix

package rimap

import "net"

// peek cannot look at a socket here: a closed connection is then found
// when the LOGIN write fails, and retried.
func peek(net.Conn) peekState { return peekUnknown }
