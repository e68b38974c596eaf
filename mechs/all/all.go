// Package all links in every mechanism saslgate ships; importing it fills
// the registry.
package all

import (
	_ "github.com/saslgate/saslgate/mechs/checkpassword" // checkpassword
	_ "github.com/saslgate/saslgate/mechs/getpwent"      // getpwent
	_ "github.com/saslgate/saslgate/mechs/pam"           // pam
	_ "github.com/saslgate/saslgate/mechs/rimap"         // rimap
	_ "github.com/saslgate/saslgate/mechs/sasldb"        // sasldb
	_ "github.com/saslgate/saslgate/mechs/shadow"        // shadow
)
