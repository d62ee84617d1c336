package topics

import "testing"

func BenchmarkAllow(b *testing.B) {
	p := &Policy{Relations: rel{}, Rules: []Rule{
		{Filter: "dev/{uid}/#", Access: ReadWrite, Users: []string{"all"}},
		{Filter: "public/#", Access: ReadWrite, Users: []string{"all"}},
	}}
	id := Identity{UID: "alice", DID: "p1"}
	cases := []struct {
		name, topic string
		write       bool
	}{
		{"own-delivery", "im/u/alice/d/p1/in", false},
		{"own-upstream", "im/up/alice/p1/msg", true},
		{"presence-contact", "im/p/bob", false},
		{"denied-foreign", "im/u/bob/d/p1/in", false},
		{"plain-uid-rule", "dev/alice/temp", true},
		{"plain-second-rule", "public/news", false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Allow(id, c.topic, c.write)
			}
		})
	}
}
