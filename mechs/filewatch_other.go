//go:build !linux

package mechs

// inotifyWatch does not exist here: FileWatch always stats.
type inotifyWatch struct{}

func startInotify([]string) *inotifyWatch       { return nil }
func (*inotifyWatch) drain() (changed, ok bool) { return true, false }
func (*inotifyWatch) close()                    {}
