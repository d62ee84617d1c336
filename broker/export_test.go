package broker

// RetainedCount returns how many retained messages mochi holds on topics
// matching filter.
func (b *Broker) RetainedCount(filter string) int { return len(b.mqtt.Topics.Messages(filter)) }

// RetainedTotal returns how many retained messages mochi holds.
func (b *Broker) RetainedTotal() int { return b.mqtt.Topics.Retained.Len() }
