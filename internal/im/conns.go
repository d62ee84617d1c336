package im

// Conn is one device connection in a cluster's connection registry: the
// node that serves it and the connection's generation there.
type Conn struct {
	UID  string `json:"u"`
	DID  string `json:"d"`
	Node string `json:"n"`
	Gen  uint64 `json:"g"`
}

// Connections is the cluster-wide registry of connected devices (cluster
// mode; a single node's own sessions are all there is). A node records
// its devices' connections, and reads the others' to count a user's
// devices wherever they are connected. A device has at most one current
// connection.
//
// Call order: Connect when a connection counts (after authentication),
// Disconnect when it stops counting; Drop when a node is found dead (or
// a restarted node's connections from before are stale).
type Connections interface {
	// Connect records c as the current connection of device (c.UID,
	// c.DID), replacing the one before wherever it was: the newest
	// connection of a device wins.
	Connect(c Conn) error
	// Disconnect removes c if it is still its device's current
	// connection (same node and generation); otherwise it changes
	// nothing.
	Disconnect(c Conn) error
	// Conns lists the current connections of uid's devices, on every
	// node, by did.
	Conns(uid string) ([]Conn, error)
	// Drop removes every connection for which gone is true and returns
	// those this call removed: when several nodes drop the same
	// connections at once, each one is returned to exactly one of them.
	Drop(gone func(c Conn) bool) ([]Conn, error)
}
