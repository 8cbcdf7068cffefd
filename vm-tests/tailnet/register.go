package main

// The registration rule of the test tailnet (docs/tailscale.md, "The test
// tailnet"): a RegisterRequest that presents the run's auth key is
// accepted; one without an auth key is accepted when its node key is
// already a registered, unexpired node of this tailnet (a node restarting
// with its saved state, as after an appliance rebuild that keeps its state
// volume — Tailscale's real control server accepts that too); anything
// else (no auth key for a new node key, a wrong auth key) is refused.
//
// testcontrol (v1.102.5) has no hook for this: RequireAuthKey is checked
// on every RegisterRequest, known node key or not. How the rule is hooked
// in, and why this way:
//
//   - testcontrol runs with RequireAuthKey "" (it never refuses by itself)
//     and Verbose true. serveRegister then logs each decoded request with
//     the global logger, log.Printf("Got %T: %s", req, json), synchronously
//     in the registering goroutine, after decoding and before it touches
//     any state (its auth-key check and node creation come later).
//   - The global logger's output is a registerGate. Its Write sees that
//     line, decodes the request, decides, writes the decision as one JSON
//     line to the -register-log file, and for a refusal panics with
//     http.ErrAbortHandler. The panic unwinds through log.Printf (which
//     releases its own mutex and buffer by defer) into serveRegister's
//     goroutine, whose HTTP/2 server (golang.org/x/net/http2, over the
//     Noise connection) recovers it silently and resets that stream: the
//     node is never created and the client's registration fails (it
//     reports the error and retries with backoff, like after "invalid
//     authkey").
//
// Why not switch RequireAuthKey per request (set it to "" for exactly a
// known node's request): the field is read by serveRegister without any
// lock, and there is no reliable point after that read at which a lock
// could be released — the refused path writes its response and returns,
// the accepted path of a known node logs nothing more. A time-based
// release would leave a real race: a request stalled between its log line
// and the check could compare against the value another request set (a
// new node without a key accepted, or a torn string read). Here nothing
// shared is written: each request's decision is made and enforced in its
// own goroutine before testcontrol acts on it, so concurrent registrations
// cannot mix up their decisions. Whether a node key is known comes from
// testcontrol's own state (Server.Node), read at the moment of the
// request. What remains:
//
//   - A refused node sees its stream reset (HTTP/2 INTERNAL_ERROR), not
//     testcontrol's "invalid authkey" nor the real server's "invalid key"
//     message. The -register-log line and one stderr line say why.
//   - Two registrations of the same new node key racing (neither known
//     yet) are decided independently; both need the auth key anyway.
//   - Everything rests on testcontrol logging the request when Verbose is
//     set, in the registering goroutine, before acting on it: true of the
//     pinned v1.102.5 (testcontrol.go, serveRegister) and checked by
//     main_test.go. A line that names a RegisterRequest but cannot be
//     decoded is refused (fail closed).
//   - Registrations only go through the global logger's Write while the
//     gate is its output: nothing may call log.SetOutput after it.
//     testcontrol's own Logf must not be the global logger: testcontrol
//     logs under its mutex (getUser's "Created user"), and the gate takes
//     that mutex (Server.Node) while the global logger's mutex is held.

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// registerMarker starts the line serveRegister logs with Verbose set.
const registerMarker = "Got tailcfg.RegisterRequest: "

// Decision is one registration decision, one JSON line in -register-log.
// It never holds the auth key, only whether one was presented.
type Decision struct {
	Time       string `json:"time"`
	NodeKey    string `json:"node_key"`
	OldNodeKey string `json:"old_node_key,omitempty"`
	// AuthKeyPresented: the request carried an auth key (valid or not).
	AuthKeyPresented bool `json:"auth_key_presented"`
	// AuthKeyValid: it was the tailnet's auth key.
	AuthKeyValid bool `json:"auth_key_valid"`
	// Known: the node key was a registered, unexpired node of this
	// tailnet when the request came.
	Known    bool   `json:"known"`
	Accepted bool   `json:"accepted"`
	Reason   string `json:"reason"`
}

// decide applies the rule to one request: presented is the auth key the
// request carried ("" for none), known whether its node key is a
// registered, unexpired node.
func decide(authKey, presented string, known bool) (accepted bool, reason string) {
	switch {
	case presented != "" && subtle.ConstantTimeCompare([]byte(presented), []byte(authKey)) == 1:
		return true, "auth key"
	case presented != "":
		return false, "wrong auth key"
	case known:
		return true, "known node key, no auth key"
	default:
		return false, "no auth key for a new node key"
	}
}

// registerGate is the global logger's output while the control server
// runs: it enforces the registration rule on testcontrol's RegisterRequest
// lines (see the top of this file) and passes every other line to out.
type registerGate struct {
	authKey string
	// known says whether a node key is a registered, unexpired node.
	known func(key.NodePublic) bool
	// out gets the other log lines and one line per decision (nil: dropped).
	out io.Writer
	// decisions gets one JSON line per decision (nil: none).
	decisions io.Writer
	now       func() time.Time

	mu sync.Mutex // serializes writes to out and decisions
}

// Write implements io.Writer for log.SetOutput; p is one log record.
func (g *registerGate) Write(p []byte) (int, error) {
	i := bytes.Index(p, []byte(registerMarker))
	if i < 0 {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.out != nil {
			g.out.Write(p)
		}
		return len(p), nil
	}
	d := g.judge(p[i+len(registerMarker):])
	g.record(d)
	if !d.Accepted {
		// Ends serveRegister before it acts on the request (see above).
		panic(http.ErrAbortHandler)
	}
	return len(p), nil
}

// judge decodes a logged RegisterRequest and decides on it.
func (g *registerGate) judge(j []byte) Decision {
	d := Decision{Time: g.now().UTC().Format(time.RFC3339Nano)}
	var req tailcfg.RegisterRequest
	if err := json.Unmarshal(bytes.TrimSpace(j), &req); err != nil {
		d.Reason = fmt.Sprintf("undecodable request: %v", err)
		return d
	}
	d.NodeKey = req.NodeKey.String()
	if !req.OldNodeKey.IsZero() {
		d.OldNodeKey = req.OldNodeKey.String()
	}
	if req.NodeKey.IsZero() {
		d.Reason = "zero node key"
		return d
	}
	presented := ""
	if req.Auth != nil {
		presented = req.Auth.AuthKey
	}
	d.AuthKeyPresented = presented != ""
	d.AuthKeyValid = d.AuthKeyPresented && subtle.ConstantTimeCompare([]byte(presented), []byte(g.authKey)) == 1
	d.Known = g.known(req.NodeKey)
	d.Accepted, d.Reason = decide(g.authKey, presented, d.Known)
	return d
}

// record writes d to the decision log and a short line to out.
func (g *registerGate) record(d Decision) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.decisions != nil {
		if b, err := json.Marshal(d); err == nil {
			g.decisions.Write(append(b, '\n'))
		}
	}
	if g.out != nil {
		verdict := "refused"
		if d.Accepted {
			verdict = "accepted"
		}
		fmt.Fprintf(g.out, "%s tailnet control: registration of %s %s (%s)\n", d.Time, d.NodeKey, verdict, d.Reason)
	}
}

// knownNode reports whether nk is a registered node of ctrl whose key has
// not expired. (Server.Node takes testcontrol's mutex.)
func knownNode(node func(key.NodePublic) *tailcfg.Node, now func() time.Time) func(key.NodePublic) bool {
	return func(nk key.NodePublic) bool {
		n := node(nk)
		return n != nil && (n.KeyExpiry.IsZero() || n.KeyExpiry.After(now()))
	}
}
