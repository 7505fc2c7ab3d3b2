package appliance

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/infergate/infergate/broker"
	"github.com/infergate/infergate/inference/group"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/web"
)

// groupComponent shares the DLQ and the members' states with the other instances of the
// group (attached mode only; docs/scaling.md). It starts after the pipeline, whose state
// it announces, and before the web server, so every operator's DLQ change is announced.
func (a *Appliance) groupComponent() *component {
	var s *group.Sharer
	return &component{
		name: "group",
		start: func(context.Context) error {
			a.mu.Lock()
			cc, st := a.client, a.store
			a.mu.Unlock()
			opts, err := cc.Opts()
			if err != nil {
				return err
			}
			gc := group.DefaultConfig()
			gc.Group, gc.DLQTopic, gc.ControlTopic = a.cfg.Pipeline.Group, a.cfg.Pipeline.DLQTopic, a.cfg.Topics.Control
			s, err = group.New(gc, a.logger.With("component", "group"), opts, st, a.memberState)
			if err != nil {
				return err
			}
			a.mu.Lock()
			a.sharer = s
			a.mu.Unlock()
			return nil
		},
		run: func(ctx context.Context) error { return s.Run(ctx) },
	}
}

// memberState is what this instance announces to the group.
func (a *Appliance) memberState() group.MemberState {
	host, _ := os.Hostname()
	m := group.MemberState{InstanceID: a.cfg.Pipeline.InstanceID, Host: host, State: web.StateStarting}
	if p := a.Pipeline(); p != nil {
		ps := p.Status()
		m.MemberID, m.State, m.Paused = ps.MemberID, pipelineState(ps), ps.Paused
	}
	return m
}

// Group describes the consumer group: its members from the coordinator, each with the
// requests partitions it owns and their lag, and (attached) the state each announced.
func (b *webBackend) Group(ctx context.Context) (*web.Group, error) {
	a := b.a
	gl, err := broker.Group(ctx, b.adm, a.cfg.Pipeline.Group, a.cfg.Pipeline.RequestsTopic)
	if err != nil {
		return nil, fmt.Errorf("%w: consumer group: %w", web.ErrUnavailable, err)
	}
	a.mu.Lock()
	sh := a.sharer
	a.mu.Unlock()
	var me string
	var mine *pipeline.Status
	if p := a.Pipeline(); p != nil {
		ps := p.Status()
		me, mine = ps.MemberID, &ps
	}
	out := &web.Group{Group: gl.Group, State: gl.State, Shared: sh != nil}
	index := map[string]int{} // member id → index in out.Members
	members := slices.SortedFunc(slices.Values(gl.Members), func(x, y broker.Member) int { return strings.Compare(x.Name(), y.Name()) })
	for _, m := range members {
		gm := web.GroupMember{Name: m.Name(), MemberID: m.MemberID, InstanceID: m.InstanceID, Host: m.Host,
			ClientID: m.ClientID, Self: m.MemberID == me && me != "", State: web.StateUnknown, Partitions: []web.GroupPartition{}}
		if gm.Self && mine != nil {
			gm.State, gm.Paused = pipelineState(*mine), mine.Paused
		}
		index[m.MemberID] = len(out.Members)
		out.Members = append(out.Members, gm)
	}
	if sh != nil {
		// The newest announcement of each member: by member id, else (a static member
		// that has not announced its new member id yet) by instance id.
		for _, ms := range sh.Members() {
			for i := range out.Members {
				gm := &out.Members[i]
				if gm.Self && ms.Origin != sh.Origin() {
					continue
				}
				match := ms.MemberID != "" && ms.MemberID == gm.MemberID ||
					ms.MemberID == "" && ms.InstanceID != "" && ms.InstanceID == gm.InstanceID
				if !match || ms.At.Before(gm.LastHeartbeat) {
					continue
				}
				gm.LastHeartbeat = ms.At
				if !gm.Self {
					gm.State, gm.Paused = ms.State, ms.Paused
				}
			}
		}
		f := sh.Following()
		out.DLQ = &web.DLQFollow{Topic: f.Topic, Behind: f.Behind, Stored: f.Stored, Skipped: f.Skipped, Applied: f.Applied}
	}
	for _, pl := range gl.Partitions {
		if pl.Topic != a.cfg.Pipeline.RequestsTopic {
			continue
		}
		gp := web.GroupPartition{Partition: pl.Partition, Committed: pl.Committed, End: pl.End, Lag: max(pl.Lag, 0)}
		out.TotalLag += gp.Lag
		i, ok := index[pl.OwnerMemberID]
		if !ok || pl.OwnerMemberID == "" {
			out.Unassigned = append(out.Unassigned, gp)
			continue
		}
		out.Members[i].Partitions = append(out.Members[i].Partitions, gp)
		out.Members[i].Lag += gp.Lag
	}
	return out, nil
}
