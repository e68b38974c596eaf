package daemon

import "os"

// Detaches reports whether Run(cfg), called in this process, re-executes
// the program in the background and only waits for it, rather than serving
// here. What must live in the serving process, such as the metrics
// listener, is started only when it is false: the parent would hold it and
// the child could not bind it again.
func Detaches(cfg Config) bool {
	return !cfg.Foreground && os.Getenv(envDetached) == ""
}
