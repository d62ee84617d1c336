package accounts

// Verify exposes the password check to the external tests.
var Verify = (*Service).verify
