package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tern-im/tern/internal/accounts"
	"github.com/tern-im/tern/internal/im"
)

// Client calls the admin API of a running broker.
type Client struct {
	Base  string // e.g. http://127.0.0.1:8080
	Token string
	HTTP  *http.Client
}

// NewClient returns a client for base with the admin token.
func NewClient(base, token string) *Client {
	return &Client{Base: strings.TrimRight(base, "/"), Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e apiError
		if json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&e) == nil && e.Error != "" {
			return fmt.Errorf("server: %s (%d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("server: %s", resp.Status)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// AddUser creates a user.
func (c *Client) AddUser(ctx context.Context, uid, password string, admin bool) error {
	return c.do(ctx, http.MethodPost, "/admin/v1/users", AddUserRequest{UID: uid, Password: password, Admin: admin}, nil)
}

// SetPassword changes a password.
func (c *Client) SetPassword(ctx context.Context, uid, password string) error {
	return c.do(ctx, http.MethodPut, "/admin/v1/users/"+url.PathEscape(uid)+"/password", PasswordRequest{Password: password}, nil)
}

// SetDisabled disables or enables a user.
func (c *Client) SetDisabled(ctx context.Context, uid string, disabled bool) error {
	verb := "enable"
	if disabled {
		verb = "disable"
	}
	return c.do(ctx, http.MethodPost, "/admin/v1/users/"+url.PathEscape(uid)+"/"+verb, nil, nil)
}

// DeleteUser removes a user.
func (c *Client) DeleteUser(ctx context.Context, uid string) error {
	return c.do(ctx, http.MethodDelete, "/admin/v1/users/"+url.PathEscape(uid), nil, nil)
}

// Users lists users.
func (c *Client) Users(ctx context.Context) ([]User, error) {
	var out []User
	return out, c.do(ctx, http.MethodGet, "/admin/v1/users", nil, &out)
}

// CreateToken issues a device token; the secret is in Token.Secret.
func (c *Client) CreateToken(ctx context.Context, uid, did string) (Token, error) {
	var out Token
	return out, c.do(ctx, http.MethodPost, "/admin/v1/users/"+url.PathEscape(uid)+"/tokens", TokenRequest{DID: did}, &out)
}

// Tokens lists a user's tokens.
func (c *Client) Tokens(ctx context.Context, uid string) ([]Token, error) {
	var out []Token
	return out, c.do(ctx, http.MethodGet, "/admin/v1/users/"+url.PathEscape(uid)+"/tokens", nil, &out)
}

// RevokeTokens revokes tokens of a device (all if did is ""; one if id set).
func (c *Client) RevokeTokens(ctx context.Context, uid, did, id string) (int, error) {
	q := url.Values{}
	if did != "" {
		q.Set("did", did)
	}
	if id != "" {
		q.Set("id", id)
	}
	var out RevokeResult
	return out.Revoked, c.do(ctx, http.MethodDelete, "/admin/v1/users/"+url.PathEscape(uid)+"/tokens?"+q.Encode(), nil, &out)
}

// Clients lists the connected clients.
func (c *Client) Clients(ctx context.Context) ([]ClientInfo, error) {
	var out []ClientInfo
	err := c.do(ctx, http.MethodGet, "/admin/v1/clients", nil, &out)
	return out, err
}

// Kick disconnects the client {uid}.{did} and returns how many
// connections were closed.
func (c *Client) Kick(ctx context.Context, clientID string) (int, error) {
	var out KickResult
	err := c.do(ctx, http.MethodDelete, "/admin/v1/clients/"+url.PathEscape(clientID), nil, &out)
	return out.Kicked, err
}

// Stats returns the broker's stats.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var out Stats
	err := c.do(ctx, http.MethodGet, "/admin/v1/stats", nil, &out)
	return out, err
}

// Cluster reports the cluster's nodes and JetStream assets (404 from a
// single node).
func (c *Client) Cluster(ctx context.Context) (ClusterStatus, error) {
	var out ClusterStatus
	err := c.do(ctx, http.MethodGet, "/admin/v1/cluster", nil, &out)
	return out, err
}

// Notice retains an operator notice on im/sys/notice.
func (c *Client) Notice(ctx context.Context, text string) (Notice, error) {
	var out Notice
	err := c.do(ctx, http.MethodPost, "/admin/v1/notice", Notice{Text: text}, &out)
	return out, err
}

// SetRetention sets a conversation's own retention ("720h", "30d"; "0"
// for the server default).
func (c *Client) SetRetention(ctx context.Context, cv, retention string) (RetentionBody, error) {
	var out RetentionBody
	err := c.do(ctx, http.MethodPut, "/admin/v1/retention/"+url.PathEscape(cv), RetentionBody{Retention: retention}, &out)
	return out, err
}

// Retention reads a conversation's own retention.
func (c *Client) Retention(ctx context.Context, cv string) (RetentionBody, error) {
	var out RetentionBody
	err := c.do(ctx, http.MethodGet, "/admin/v1/retention/"+url.PathEscape(cv), nil, &out)
	return out, err
}

// AddHold places a legal hold.
func (c *Client) AddHold(ctx context.Context, req HoldRequest) (im.Hold, error) {
	var out im.Hold
	err := c.do(ctx, http.MethodPost, "/admin/v1/holds", req, &out)
	return out, err
}

// Holds lists the legal holds.
func (c *Client) Holds(ctx context.Context) ([]im.Hold, error) {
	var out []im.Hold
	err := c.do(ctx, http.MethodGet, "/admin/v1/holds", nil, &out)
	return out, err
}

// RemoveHold lifts a legal hold.
func (c *Client) RemoveHold(ctx context.Context, id string) (im.Hold, error) {
	var out im.Hold
	err := c.do(ctx, http.MethodDelete, "/admin/v1/holds/"+url.PathEscape(id), nil, &out)
	return out, err
}

// ExportFiles streams the tar of the files an export's events attach
// into w.
func (c *Client) ExportFiles(ctx context.Context, q url.Values, w io.Writer) error {
	return c.stream(ctx, "/admin/v1/export/files?"+q.Encode(), w)
}

// Export streams an export into w (query keys user, cv, since, until).
// The reply has no time limit: exports are long.
func (c *Client) Export(ctx context.Context, q url.Values, w io.Writer) error {
	return c.stream(ctx, "/admin/v1/export?"+q.Encode(), w)
}

// stream copies a long GET reply into w, with no time limit.
func (c *Client) stream(ctx context.Context, path string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := *c.HTTP
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e apiError
		if json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&e) == nil && e.Error != "" {
			return fmt.Errorf("server: %s (%d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("server: %s", resp.Status)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// EnableTOTP turns on two-factor login for uid and returns the setup to
// show once.
func (c *Client) EnableTOTP(ctx context.Context, uid string) (accounts.TOTPSetup, error) {
	var out accounts.TOTPSetup
	err := c.do(ctx, http.MethodPost, "/admin/v1/users/"+url.PathEscape(uid)+"/totp", nil, &out)
	return out, err
}

// DisableTOTP turns two-factor login off for uid.
func (c *Client) DisableTOTP(ctx context.Context, uid string) error {
	return c.do(ctx, http.MethodDelete, "/admin/v1/users/"+url.PathEscape(uid)+"/totp", nil, nil)
}

// ClusterClients lists the clients of every node of the cluster (404
// from a single node).
func (c *Client) ClusterClients(ctx context.Context) ([]ClientInfo, error) {
	var out []ClientInfo
	err := c.do(ctx, http.MethodGet, "/admin/v1/cluster/clients", nil, &out)
	return out, err
}

// ClusterStats reports every node's state (404 from a single node).
func (c *Client) ClusterStats(ctx context.Context) ([]Stats, error) {
	var out []Stats
	err := c.do(ctx, http.MethodGet, "/admin/v1/cluster/stats", nil, &out)
	return out, err
}
