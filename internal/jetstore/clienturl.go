package jetstore

// ClientURL is the node's client listener (nats://host:port), for tools
// and for tests of an external NATS.
func (n *Node) ClientURL() string { return n.srv.ClientURL() }
