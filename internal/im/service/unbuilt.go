package service

// notBuilt lists the RPC ops of the protocol (PROTOCOL §9, §11, §12, §15,
// §16) that this server does not implement yet. They are answered with
// err 501 "not implemented", so a device can tell "not here yet" from a
// typo (400 "unknown op"). A feature that lands removes its entries.
var notBuilt = map[string]bool{
	"key.upload":         true, // §12 keys
	"key.query":          true,
	"key.claim":          true,
	"token.create":       true, // device tokens over RPC (tern token and the admin API exist)
	"token.list":         true,
	"token.revoke":       true,
	"admin.kick":         true, // admin over RPC (the HTTP admin API exists)
	"admin.broadcast":    true,
	"admin.user.create":  true,
	"admin.user.disable": true,
	"admin.stats":        true,
}
