module github.com/saslgate/saslgate

go 1.26.8

require (
	github.com/coreos/go-systemd/v22 v22.6.0
	github.com/emersion/go-imap/v2 v2.0.0-beta.8
	github.com/msteinert/pam/v2 v2.1.0
	github.com/spf13/cobra v1.10.2
	github.com/spf13/pflag v1.0.9
)

require (
	github.com/emersion/go-message v0.18.2 // indirect
	github.com/emersion/go-sasl v0.0.0-20241020182733-b788ff22d5a6 // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
)
