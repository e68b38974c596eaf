// Package rewrite holds the daemon's request transforms: what happens to a
// request's login, realm and service between the wire and the mechanism
// chain. Every transform is a pure function of the request; nothing here
// does I/O, reads the clock or keeps state, so Rules can be swapped on
// SIGHUP and shared by every connection.
//
// # Rule order
//
// Rules.Apply runs the rules in this fixed order. Each is off when its
// field is zero, and each is named after its config key (daemon/config):
//
//  1. realm_split: a login holding "@" is split at the LAST "@" into login
//     and realm, as libsasl does before it talks to saslauthd (spec §4.2),
//     so "testsaslauthd -u alice@example.com" behaves as Postfix does.
//     The split happens even when the realm field is set: the domain the
//     user typed wins over the application's user_realm, as in libsasl.
//     A login whose part before or after the last "@" would be empty
//     ("@example.com", "alice@") is left as it is.
//  2. default_realm: an empty realm becomes DefaultRealm.
//  3. realm_lowercase, login_lowercase: ASCII letters are lower-cased
//     (bytes >= 0x80 are left alone, as Dovecot's %L does), so "Alice" and
//     "alice" reach the back end and the cache as one user.
//  4. login_chars: when LoginChars is not empty every character of the
//     login and of the realm must be in it (Dovecot's auth_username_chars
//     checks "user@domain" as typed; the "@" that separates the two fields
//     need not be listed). Otherwise Apply stops with an error wrapping
//     ErrInvalidLogin; the daemon replies ReplyInvalidLogin and never calls
//     the chain. The check sees the login after lower-casing.
//  5. realm_strip: the realm is cleared when RealmStripAll is set or when
//     it is one of RealmStrip (ASCII case-insensitive), so PAM, shadow and
//     rimap get the bare user and sasldb its default realm (the host name).
//     Result.Logged keeps the realm as it was before the strip.
//  6. realm_join (saslauthd's -r): a non-empty realm is appended to the
//     login as "login@realm", cut at 512 bytes as saslauthd cuts it. The
//     realm field is passed on too. Strip runs first, so
//     "realm_strip: example.com" with -r gives bare users for example.com
//     and "user@other.org" for every other realm.
//
// Then the service is looked up in Rules.Services: Result.Request.Service
// becomes the PAM service the request's service maps to (service_map) and
// Result.Chain names the mechanism chain that serves it (service_mech, by
// default the mech key). Result.Logged keeps the client's own service, for
// the log line and the cache key.
//
// Trace records each change, for the login-debug log. Its strings quote
// client bytes with strconv.Quote, so they are safe to log as they are.
// The password is never touched, traced or formatted.
package rewrite
