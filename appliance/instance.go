package appliance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// clientIDPrefix starts the Kafka client id of every instance's pipeline.
const clientIDPrefix = "infergate-"

// ClientID is the Kafka client id of this instance's pipeline: stable
// across its restarts (from the host and the data dir, like the derived
// transactional id) and different for two live instances, which cannot
// share a data dir (it is locked). The group's members show it, which tells
// a restart of this instance from another instance with the same
// pipeline.instance_id (checkInstanceID).
func (c *Config) ClientID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	dir, err := filepath.Abs(c.DataDir)
	if err != nil {
		dir = c.DataDir
	}
	sum := sha256.Sum256([]byte(host + "\x00" + dir))
	return clientIDPrefix + hex.EncodeToString(sum[:4])
}

// checkInstanceID refuses to start when a member of the consumer group
// already has this instance's pipeline.instance_id and is another instance
// (another host or data dir): joining would fence it (FENCED_INSTANCE_ID),
// so a misconfigured new instance would stop a healthy one. This
// instance's own previous run (a restart after a crash, within
// pipeline.session_timeout) has the same client id and is let through, so
// static membership still takes its partitions back. Members of older
// versions (another client id scheme) are not judged. When the group
// cannot be described (no broker answers yet) the check is skipped: the
// pipeline reports the broker itself.
func (a *Appliance) checkInstanceID(ctx context.Context) error {
	id, grp := a.cfg.Pipeline.InstanceID, a.cfg.Pipeline.Group
	if id == "" {
		return nil
	}
	cl, err := a.kafkaClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	gs, err := kadm.NewClient(cl).DescribeGroups(ctx, grp)
	if err == nil {
		err = gs[grp].Err
	}
	if err != nil {
		a.logger.Warn("could not check that no other instance uses pipeline.instance_id", "instance_id", id, "group", grp, "err", err)
		return nil
	}
	me := a.cfg.ClientID()
	for _, m := range gs[grp].Members {
		if m.InstanceID == nil || *m.InstanceID != id || !strings.HasPrefix(m.ClientID, clientIDPrefix) || m.ClientID == me {
			continue
		}
		return fmt.Errorf("%s: %q is already used by a member of consumer group %q, another instance (client %s on %s; this one is %s): "+
			"every live instance needs its own instance id; if that instance crashed, the group forgets it after pipeline.session_timeout (%s)",
			a.cfg.describeKey("pipeline.instance_id"), id, grp, m.ClientID, m.ClientHost, me, a.cfg.Pipeline.SessionTimeout)
	}
	return nil
}

// describeKey names a setting the way errors do: key (--flag, ENV).
func (c *Config) describeKey(key string) string {
	for _, s := range c.settings() {
		if s.Key == key {
			return s.describe()
		}
	}
	return key
}
