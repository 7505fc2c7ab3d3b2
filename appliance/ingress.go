package appliance

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/infergate/infergate/ingress"
	"github.com/infergate/infergate/web"
)

// NATSDir holds the embedded nats-server's JetStream store (the ingress's
// durable inbox).
const NATSDir = "nats"

// validateIngress checks ingress.*, only when the ingress is enabled.
func (c *Config) validateIngress(v *validator) {
	in := c.Ingress
	if !in.Enabled {
		return
	}
	switch in.Mode {
	case ingress.ModeEmbedded:
	case ingress.ModeExternal:
		c.validateExternalIngress(v)
		return
	default:
		v.errf("ingress.mode", "%q: want %s or %s", in.Mode, ingress.ModeEmbedded, ingress.ModeExternal)
		return
	}
	if len(in.NATSURL) > 0 {
		v.errf("ingress.nats_url", "is for ingress.mode %s; with the embedded server devices connect to ingress.mqtt_listen and ingress.nats_listen", ingress.ModeExternal)
	}
	if in.MQTTListen == "" && in.NATSListen == "" {
		v.errf("ingress.mqtt_listen", "and ingress.nats_listen are both empty: the ingress needs at least one listener")
	}
	if in.MQTTListen != "" {
		v.listenAddr("ingress.mqtt_listen", in.MQTTListen)
	}
	if in.NATSListen != "" {
		v.listenAddr("ingress.nats_listen", in.NATSListen)
	}
	c.validateIngressFlow(v)
	if in.MaxStore < 0 {
		v.errf("ingress.max_store", "%d: must be >= 0 (0: nats-server's default)", in.MaxStore)
	}
	if (in.TLSCert == "") != (in.TLSKey == "") {
		v.errf("ingress.tls_cert", "set it and ingress.tls_key (--ingress-tls-key) both to serve TLS, or neither")
	}
	auth, err := in.auth()
	if err != nil {
		v.errf("ingress.devices_file", "%v", err)
		return
	}
	cfg := c.ingressConfig("-")
	cfg.Auth = auth
	if err := cfg.CheckAuth(); err != nil {
		key := "ingress.devices_file"
		if in.DevicesFile == "" {
			v.errf(key, "is not set, so devices would connect without credentials, and %v", err)
			return
		}
		v.errf(key, "%s: %v", in.DevicesFile, err)
	}
}

// validateExternalIngress checks ingress.* in external mode: the server's
// address and how to reach it; the embedded server's settings are refused
// rather than silently ignored.
func (c *Config) validateExternalIngress(v *validator) {
	in := c.Ingress
	if len(in.NATSURL) == 0 {
		v.errf("ingress.nats_url", "must be set with ingress.mode %s: the NATS server devices connect to", ingress.ModeExternal)
	}
	for _, u := range in.NATSURL {
		if !strings.Contains(u, "://") {
			v.errf("ingress.nats_url", "%q: want a URL such as nats://host:4222 or tls://host:4222", u)
		}
	}
	if in.NATSCredsFile != "" && (in.NATSUser != "" || in.NATSPassword != "") {
		v.errf("ingress.nats_creds_file", "and ingress.nats_user / ingress.nats_password: give one or the other")
	}
	if (in.NATSCertFile == "") != (in.NATSKeyFile == "") {
		v.errf("ingress.nats_cert_file", "set it and ingress.nats_key_file (--ingress-nats-key) both for mutual TLS, or neither")
	}
	for _, f := range []struct{ key, val string }{{"ingress.devices_file", in.DevicesFile}, {"ingress.tls_cert", in.TLSCert}} {
		if f.val != "" {
			v.errf(f.key, "configures the embedded server; with ingress.mode %s, device credentials and TLS are the external server's configuration", ingress.ModeExternal)
		}
	}
	c.validateIngressFlow(v)
}

// validateIngressFlow checks what both modes share: the results group and
// how acknowledgements and answers flow.
func (c *Config) validateIngressFlow(v *validator) {
	in := c.Ingress
	if in.Group == "" {
		v.errf("ingress.group", "must be set")
	} else if in.Group == c.Pipeline.Group {
		v.errf("ingress.group", "%q is also pipeline.group: the ingress reads the results with a group of its own", in.Group)
	}
	if in.MaxAckPending < 1 {
		v.errf("ingress.max_ack_pending", "%d: must be >= 1", in.MaxAckPending)
	}
	if in.AckWait.Seconds() < 1 {
		v.errf("ingress.ack_wait", "%s: must be at least 1s", in.AckWait)
	}
	if in.AnswerQoS != 0 && in.AnswerQoS != 1 {
		v.errf("ingress.answer_qos", "%d: must be 0 or 1", in.AnswerQoS)
	}
}

// auth reads ingress.devices_file.
func (in IngressConfig) auth() (ingress.AuthConfig, error) {
	var a ingress.AuthConfig
	if in.DevicesFile == "" {
		return a, nil
	}
	f, err := os.Open(in.DevicesFile)
	if err != nil {
		return a, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		switch {
		case len(fields) == 2:
			a.Devices = append(a.Devices, ingress.Device{Name: fields[0], Password: fields[1]})
		case len(fields) == 3 && fields[0] == "observer":
			a.Observers = append(a.Observers, ingress.Device{Name: fields[1], Password: fields[2]})
		default:
			return a, fmt.Errorf("%s line %d: want \"NAME PASSWORD\" or \"observer NAME PASSWORD\"", in.DevicesFile, n)
		}
	}
	if err := sc.Err(); err != nil {
		return a, err
	}
	if len(a.Devices) == 0 && len(a.Observers) == 0 {
		return a, fmt.Errorf("%s lists no device", in.DevicesFile)
	}
	return a, nil
}

// ingressConfig is the ingress package's part of c.
func (c *Config) ingressConfig(storeDir string) ingress.Config {
	ic := ingress.DefaultConfig()
	ic.Mode = c.Ingress.Mode
	ic.External = ingress.ExternalConfig{URLs: c.Ingress.NATSURL, User: c.Ingress.NATSUser, Password: c.Ingress.NATSPassword,
		CredsFile: c.Ingress.NATSCredsFile, CAFile: c.Ingress.NATSCAFile, CertFile: c.Ingress.NATSCertFile, KeyFile: c.Ingress.NATSKeyFile}
	ic.StoreDir = storeDir
	ic.MQTTListen = c.Ingress.MQTTListen
	ic.NATSListen = c.Ingress.NATSListen
	ic.RequestsTopic = c.Pipeline.RequestsTopic
	ic.ResultsTopic = c.Pipeline.ResultsTopic
	ic.DLQTopic = c.Pipeline.DLQTopic
	ic.Group = c.Ingress.Group
	ic.MaxAckPending = c.Ingress.MaxAckPending
	ic.AckWait = c.Ingress.AckWait
	ic.MaxStore = c.Ingress.MaxStore
	ic.SyncAlways = c.Ingress.SyncAlways
	ic.AnswerQoS = c.Ingress.AnswerQoS
	ic.TLSCert = c.Ingress.TLSCert
	ic.TLSKey = c.Ingress.TLSKey
	return ic
}

// ingressComponent starts after the pipeline and stops before it: devices
// are cut off first, the requests the ingress holds are produced and
// acknowledged in JetStream, then the pipeline drains. Answers the pipeline
// produces while draining stay in the results topic and reach the devices
// after the restart (the ingress's group has not committed them).
func (a *Appliance) ingressComponent() *component {
	var in *ingress.Ingress
	return &component{
		name: "ingress",
		start: func(ctx context.Context) error {
			auth, err := a.cfg.Ingress.auth()
			if err != nil {
				return fmt.Errorf("ingress.devices_file (--ingress-devices-file, INFERGATE_INGRESS_DEVICES_FILE): %w", err)
			}
			a.mu.Lock()
			cc := a.client
			a.mu.Unlock()
			opts, err := cc.Opts()
			if err != nil {
				return err
			}
			cfg := a.cfg.ingressConfig(filepath.Join(a.paths.Root, NATSDir))
			cfg.Auth = auth
			in, err = ingress.New(cfg, a.logger.With("component", "ingress"), opts, a.reg)
			if err != nil {
				return err
			}
			if err := in.Start(ctx); err != nil {
				return err
			}
			a.mu.Lock()
			a.ingress = in
			a.mu.Unlock()
			return nil
		},
		run: func(ctx context.Context) error { return in.Run(ctx) },
		// "infergate is ready" means devices can connect.
		readyTimeout: 30 * time.Second,
		ready: func() error {
			if !in.Ready() {
				return errors.New("not open to devices yet")
			}
			return nil
		},
		stop: func() error {
			if in == nil {
				return nil
			}
			return in.Close()
		},
	}
}

// Ingress is the edge ingress, nil unless ingress.enabled and started.
func (a *Appliance) Ingress() *ingress.Ingress {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ingress
}

// Ingress reports the edge ingress for the dashboard's Ingress view.
func (b *webBackend) Ingress(ctx context.Context) (*web.IngressStatus, bool) {
	in := b.a.Ingress()
	if in == nil {
		return nil, false
	}
	st := in.Status(ctx)
	out := &web.IngressStatus{
		Server:    "nats-server " + st.ServerVersion + " (embedded)",
		Anonymous: st.Anonymous, AnswerQoS: st.AnswerQoS,
		InboxPending: st.InboxPending, AckPending: st.AckPending,
		Rejects: make([]web.IngressReject, 0, len(st.Rejects)),
	}
	if st.External {
		// The external server's clients and rejects are its own: not
		// shown as zero here.
		out.Server = "nats-server " + st.ServerVersion + " (external, " + st.URL + ")"
		out.External = true
	} else {
		out.Clients = map[string]int{ingress.OriginMQTT: st.ClientsMQTT, ingress.OriginNATS: st.ClientsNATS}
	}
	if st.MQTTAddr != "" {
		out.Listeners = append(out.Listeners, web.IngressListener{Protocol: ingress.OriginMQTT, Address: st.MQTTAddr, TLS: st.TLS})
	}
	if st.NATSAddr != "" {
		out.Listeners = append(out.Listeners, web.IngressListener{Protocol: ingress.OriginNATS, Address: st.NATSAddr, TLS: st.TLS})
	}
	for _, r := range st.Rejects {
		out.Rejects = append(out.Rejects, web.IngressReject{At: r.At, Reason: r.Reason, Client: r.Client, Detail: r.Detail})
	}
	return out, true
}
