package rewrite

import (
	"slices"
	"strings"
)

// AnyService is the service_map entry that applies to every service
// without an entry of its own.
const AnyService = "*"

// ServiceMap sends each request's SASL service name (smtp, imap, ...) to a
// PAM service and to a mechanism chain. Service names are matched exactly
// (case-sensitively), as PAM matches its file names.
type ServiceMap struct {
	// Default is the chain of a service without a Chains entry: the mech
	// key (saslauthd's -a), in canonical form ("sasldb,pam").
	Default string
	// PAM maps a service to the PAM service the pam mechanism opens
	// (service_map: smtp=mail). The entry AnyService ("*") catches every
	// service without an entry of its own; without it a service maps to
	// itself, as in saslauthd.
	PAM map[string]string
	// Chains maps a service to its own chain (service_mech:
	// imap=rimap; smtp=sasldb,pam), in canonical form: lower-case names
	// joined by "," with no spaces.
	Chains map[string]string
}

// Lookup returns the PAM service and the chain for a request's service.
func (m ServiceMap) Lookup(service string) (pamService, chain string) {
	pamService = service
	if p, ok := m.PAM[service]; ok {
		pamService = p
	} else if p, ok := m.PAM[AnyService]; ok {
		pamService = p
	}
	chain = m.Default
	if c, ok := m.Chains[service]; ok {
		chain = c
	}
	return pamService, chain
}

// ChainNames lists every chain Lookup can return, each once: Default first
// (when not empty), then the others sorted. The daemon builds one
// mechs.Chain for each.
func (m ServiceMap) ChainNames() []string {
	var out []string
	for _, c := range m.Chains {
		if c != m.Default && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	if m.Default != "" {
		out = append([]string{m.Default}, out...)
	}
	return out
}

// SplitChain returns the mechanism names of a chain in canonical form
// ("sasldb,pam" gives sasldb, pam); "" gives nil.
func SplitChain(chain string) []string {
	if chain == "" {
		return nil
	}
	return strings.Split(chain, ",")
}
