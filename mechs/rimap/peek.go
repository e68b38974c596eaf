package rimap

// peekState is what an idle connection's socket holds.
type peekState uint8

const (
	peekUnknown peekState = iota // cannot tell (not a socket, or no way to peek here)
	peekIdle                     // open, nothing to read
	peekData                     // the server sent something
	peekEOF                      // the server closed it
	peekError                    // reset, or otherwise broken
)
