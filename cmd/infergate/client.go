package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/infergate/infergate/appliance"
	"github.com/infergate/infergate/broker"
)

// clientFlags are the connection flags of produce, consume and dlq. Their
// defaults come from the same settings as `infergate run` (config file and
// INFERGATE_* environment), so the commands find a local appliance with no
// flags at all and an external cluster with the same TLS/SASL settings.
type clientFlags struct {
	config  string
	brokers string
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "config file of the appliance, for broker address, TLS, SASL and topic names (default ./infergate.yaml if present)")
	fs.StringVar(&f.brokers, "brokers", "", "seed brokers HOST:PORT,... (default: the appliance's broker from the config and INFERGATE_* environment, else 127.0.0.1:9092)")
}

// settings loads the appliance settings these commands share.
func (f *clientFlags) settings(environ []string) (*appliance.Config, error) {
	var args []string
	if f.config != "" {
		args = []string{"--config", f.config}
	}
	cfg, err := appliance.Load(args, environ, io.Discard)
	if err != nil {
		return nil, usageErr(err)
	}
	return cfg, nil
}

// client returns the connection settings and the loaded appliance settings.
func (f *clientFlags) client(environ []string) (broker.ClientConfig, *appliance.Config, error) {
	cfg, err := f.settings(environ)
	if err != nil {
		return broker.ClientConfig{}, nil, err
	}
	cc := cfg.ClientConfig()
	if f.brokers != "" {
		cc.Brokers = nil
		for _, b := range strings.Split(f.brokers, ",") {
			if b = strings.TrimSpace(b); b != "" {
				cc.Brokers = append(cc.Brokers, b)
			}
		}
	}
	if err := cc.Validate(); err != nil {
		return cc, nil, usageErr(fmt.Errorf("--brokers: %w", err))
	}
	return cc, cfg, nil
}

// newFlagSet makes a flag set whose errors and help go to w.
func newFlagSet(name, synopsis string, w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(w)
	fs.Usage = func() {
		fmt.Fprintf(w, "Usage: infergate %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}
