// Package topics holds Tern's pure naming and access rules: identifier
// validation, building and parsing topic names of the im/ tree (PROTOCOL §2,
// §4) and the ACL decision (§10) together with the configurable rules of the
// plain-MQTT namespace. It does no I/O, so it is cheap to table-test and fuzz.
package topics
