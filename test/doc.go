// Package test holds saslgate's end-to-end tests: the built binary
// (bin/saslgate, made by `make build`) against real peers: Cyrus SASL's own
// saslauthd, testsaslauthd and saslpasswd2 (Debian's sasl2-bin), Postfix and
// swaks. Most need root. When CI=true a missing peer fails the test instead
// of skipping it.
package test
