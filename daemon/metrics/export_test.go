package metrics

import "net/http"

// HTTPServer is the endpoint's server, for checking its bounds.
func HTTPServer(e *Endpoint) *http.Server { return e.srv }
