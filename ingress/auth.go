package ingress

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/nats-io/nats-server/v2/server"
)

// AuthConfig decides who may connect to the listeners.
type AuthConfig struct {
	// Devices are the credentials devices connect with (MQTT username and
	// password; NATS user and password, or the password alone as a token).
	// A device may publish only requests naming itself as the device and
	// read only its own results. With no devices, any client may connect
	// (anonymous), which is refused unless every listener is on loopback.
	Devices []Device
	// Observers may subscribe to every result (dashboards, historians) and
	// publish nothing.
	Observers []Device
}

// Device is one set of credentials; Name is also the device level of its
// request and result subjects.
type Device struct {
	Name     string
	Password string
}

// ErrAnonymousExposed is returned by Validate when a listener that is not on
// loopback would accept clients without credentials.
var ErrAnonymousExposed = errors.New("anonymous access on a listener that is not loopback")

func (a *AuthConfig) validate(exposed []string) error {
	if len(a.Devices) == 0 && len(a.Observers) == 0 && len(exposed) > 0 {
		return fmt.Errorf("%w: %s would accept any client; give devices credentials (Auth.Devices) or listen on 127.0.0.1",
			ErrAnonymousExposed, strings.Join(exposed, ", "))
	}
	seen := map[string]bool{}
	for _, d := range append(append([]Device(nil), a.Devices...), a.Observers...) {
		switch {
		case d.Name == "":
			return errors.New("a device has no name")
		case strings.ContainsAny(d.Name, ".*>/+# \t"):
			return fmt.Errorf("device %q: a name is one subject level: no '.', '*', '>', '/', '+', '#' or spaces", d.Name)
		case d.Password == "":
			return fmt.Errorf("device %q has no password", d.Name)
		case seen[d.Name]:
			return fmt.Errorf("device %q is listed twice", d.Name)
		}
		seen[d.Name] = true
	}
	return nil
}

// authenticator is nats-server's CustomClientAuthentication: the ingress's
// own in-process connection presents a random token; devices are checked
// against the configured credentials and get permissions limited to their
// own subjects. Nobody but the ingress is let in before open is set, so no
// device publishes before the inbox consumer exists (the inbox stream keeps
// a message only while a consumer is interested in it).
type authenticator struct {
	internal  string
	open      atomic.Bool
	devices   map[string]Device
	observers map[string]Device
	anonymous bool
	refused   atomic.Int64
	// onRefused, if set, hears of each client refused for its
	// credentials: the name it gave (never its secret) and its address.
	onRefused func(client, remote string)
}

func newAuthenticator(cfg AuthConfig, internalToken string) *authenticator {
	a := &authenticator{internal: internalToken, devices: map[string]Device{}, observers: map[string]Device{}}
	for _, d := range cfg.Devices {
		a.devices[d.Name] = d
	}
	for _, d := range cfg.Observers {
		a.observers[d.Name] = d
	}
	a.anonymous = len(a.devices) == 0 && len(a.observers) == 0
	return a
}

var _ server.Authentication = (*authenticator)(nil)

func (a *authenticator) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	if o.Token != "" && equal(o.Token, a.internal) {
		c.RegisterUser(&server.User{Username: "infergate-ingress"})
		return true
	}
	if !a.open.Load() {
		return false
	}
	if a.anonymous {
		c.RegisterUser(&server.User{Username: "anonymous", Permissions: anonymousPermissions()})
		return true
	}
	name, secret := o.Username, o.Password
	if name == "" {
		// A NATS token, or an MQTT password without a user name, is
		// "name:password".
		name, secret, _ = strings.Cut(o.Token, ":")
	}
	if d, ok := a.devices[name]; ok && equal(secret, d.Password) {
		c.RegisterUser(&server.User{Username: d.Name, Permissions: devicePermissions(d.Name)})
		return true
	}
	if d, ok := a.observers[name]; ok && equal(secret, d.Password) {
		c.RegisterUser(&server.User{Username: d.Name, Permissions: observerPermissions()})
		return true
	}
	a.refused.Add(1)
	if a.onRefused != nil {
		remote := ""
		if addr := c.RemoteAddress(); addr != nil {
			remote = addr.String()
		}
		shown := name
		if o.Username == "" && !strings.Contains(o.Token, ":") {
			shown = "" // a bare token may be a secret: never shown
		}
		if shown == "" {
			shown = "(no name)"
		}
		a.onRefused(shown, remote)
	}
	return false
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// devicePermissions lets a device publish requests as itself (over MQTT,
// core NATS or JetStream into the inbox) and read its own results. The
// $MQTT.sub. and $JS.API subjects are what nats-server's MQTT layer and a
// JetStream publish need on behalf of the client.
func devicePermissions(device string) *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			RequestsPrefix + "*." + device,
			InboxPrefix + RequestsPrefix + "*." + device,
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			ResultsPrefix + "*." + device,
			"_INBOX.>",
		}},
		Response: &server.ResponsePermission{MaxMsgs: 1},
	}
}

// anonymousPermissions (loopback only) let a client publish any request
// and read any result.
func anonymousPermissions() *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			RequestsPrefix + ">",
			InboxPrefix + RequestsPrefix + ">",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{ResultsPrefix + ">", resultsLevel, "_INBOX.>"}},
	}
}

// resultsLevel is the results level itself: MQTT's "infergate/results/#"
// also subscribes to "infergate.results" (the '#' matches the parent
// level too), and nats-server refuses the whole MQTT subscription if one
// of its subjects is not allowed.
const resultsLevel = "infergate.results"

func observerPermissions() *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Deny: []string{">"}},
		Subscribe: &server.SubjectPermission{Allow: []string{ResultsPrefix + ">", resultsLevel}},
	}
}
