package broker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/broker"
	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/config"
)

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate into dir and returns their paths and the CA pool.
type testPKI struct {
	caFile, certFile, keyFile string
	pool                      *x509.CertPool
	client                    tls.Certificate
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tern test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(cn string, usage x509.ExtKeyUsage, ip bool) ([]byte, *ecdsa.PrivateKey) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
		}
		if ip {
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srvDER, srvKey := issue("127.0.0.1", x509.ExtKeyUsageServerAuth, true)
	srvKeyDER, _ := x509.MarshalECPrivateKey(srvKey)
	cliDER, cliKey := issue("alice.p1", x509.ExtKeyUsageClientAuth, false)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{
		caFile:   write("ca.pem", "CERTIFICATE", caDER),
		certFile: write("server.pem", "CERTIFICATE", srvDER),
		keyFile:  write("server.key", "EC PRIVATE KEY", srvKeyDER),
		pool:     pool,
		client:   tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: cliKey},
	}
}

func TestTLSAndMutualTLS(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	b := brokertest.Start(t, func(c *config.Config) {
		c.TLS = config.Listener{Addr: "127.0.0.1:0", Cert: pki.certFile, Key: pki.keyFile,
			ClientCA: pki.caFile, RequireClientCert: true}
	})
	b.AddUser("alice", pw)
	url := "ssl://" + b.Addr(broker.ListenerTLS)

	withCert := b.ClientOptionsAt(url, "alice.p1", "alice", pw).SetTLSConfig(&tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}})
	c := b.Connect(withCert)
	brokertest.Subscribe(t, c, "im/u/alice/d/p1/#", 1, func(paho.Client, paho.Message) {})

	noCert := b.ClientOptionsAt(url, "alice.p2", "alice", pw).SetTLSConfig(&tls.Config{RootCAs: pki.pool})
	if err := b.TryConnect(noCert); err == nil {
		t.Fatal("client without certificate admitted to a require_client_cert listener")
	}
}

func TestBadTLSFilesRefuseToStart(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	cfg.TLS = config.Listener{Addr: "127.0.0.1:0", Cert: "/nonexistent/cert.pem", Key: "/nonexistent/key.pem"}
	_, err := broker.New(cfg, brokertest.Logger(t))
	if err == nil || !strings.Contains(err.Error(), "tls") {
		t.Fatalf("broker.New with unreadable TLS files: %v", err)
	}
}

func TestWebSocket(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	c := b.Connect(b.ClientOptionsAt("ws://"+b.Addr(broker.ListenerWS)+"/mqtt", "alice.p1", "alice", pw))
	got := make(chan string, 1)
	brokertest.Subscribe(t, c, "im/sys/server", 1, func(_ paho.Client, m paho.Message) {
		select {
		case got <- string(m.Payload()):
		default:
		}
	})
	select {
	case p := <-got:
		if !strings.Contains(p, "epoch") {
			t.Fatalf("payload %q", p)
		}
	case <-time.After(brokertest.Timeout):
		t.Fatal("nothing over websocket")
	}
}

func TestMQTT5(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t, func(c *config.Config) { c.Limits.MaxKeepalive = 60 * time.Second })
	b.AddUser("alice", pw)
	c, ca, err := b.Dial5("alice", "p1", pw)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if ca.ReasonCode != 0 {
		t.Fatalf("connack reason %#x", ca.ReasonCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{
		{Topic: "im/u/alice/d/p1/#", QoS: 1}, {Topic: "im/u/bob/d/p1/#", QoS: 1}, {Topic: "$SYS/#", QoS: 0},
	}})
	if sa == nil { // paho returns an error too when any filter was refused
		t.Fatal(err)
	}
	if want := []byte{1, 0x87, 0x87}; string(sa.Reasons) != string(want) {
		t.Fatalf("suback reasons %x, want %x", sa.Reasons, want)
	}
	// A publish outside the device's own upstream tree gets PUBACK 0x87.
	pr, err := c.Publish(ctx, &paho5.Publish{Topic: "im/u/bob/d/p1/in", QoS: 1, Payload: []byte("{}")})
	if pr == nil || pr.ReasonCode != 0x87 {
		t.Fatalf("foreign publish: %+v, %v; want PUBACK 0x87", pr, err)
	}

	// Server keepalive: a client asking for more than the cap gets the cap.
	nc, err := net.Dial("tcp", b.Addr(broker.ListenerMQTT))
	if err != nil {
		t.Fatal(err)
	}
	c2 := paho5.NewClient(paho5.ClientConfig{Conn: nc})
	ca2, err := c2.Connect(ctx, &paho5.Connect{ClientID: "alice.p2", Username: "alice", Password: []byte(pw),
		UsernameFlag: true, PasswordFlag: true, KeepAlive: 600, CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Disconnect(&paho5.Disconnect{})
	if ca2.Properties == nil || ca2.Properties.ServerKeepAlive == nil || *ca2.Properties.ServerKeepAlive != 60 {
		t.Fatalf("server keepalive = %+v", ca2.Properties)
	}

	// Refusals carry MQTT 5 reason codes.
	if _, ca3, err := b.Dial5("alice", "p3", "wrong-password"); err == nil || ca3 == nil || ca3.ReasonCode != 0x86 {
		t.Fatalf("wrong password: %v %+v", err, ca3)
	}
}
