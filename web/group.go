package web

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// GroupReporter is implemented by a Backend that knows its consumer group's members (the
// appliance); GET /api/v1/group answers 501 for one that does not.
type GroupReporter interface {
	// Group describes the consumer group sharing the requests topic.
	Group(ctx context.Context) (*Group, error)
}

// Group is GET /api/v1/group: the members of the consumer group sharing the requests
// topic, the partitions each owns with their lag, and the group's total lag.
type Group struct {
	Group string `json:"group"`
	// State is the coordinator's: Stable, PreparingRebalance, CompletingRebalance, Empty.
	State string `json:"state"`
	// Shared: instances attached to one cluster announce their states to each other (the
	// members' State, Paused and LastHeartbeat) and share one DLQ; false on an edge box.
	Shared   bool          `json:"shared"`
	TotalLag int64         `json:"total_lag"`
	Members  []GroupMember `json:"members"`
	// Unassigned are the requests partitions no member owns (a rebalance, an empty group).
	Unassigned []GroupPartition `json:"unassigned"`
	// DLQ is how far this instance's store has followed the group's DLQ topic (Shared only).
	DLQ *DLQFollow `json:"dlq,omitempty"`
}

// GroupMember is one member of the group.
type GroupMember struct {
	// Name is the instance id of a static member, else its member id.
	Name       string `json:"name"`
	MemberID   string `json:"member_id"`
	InstanceID string `json:"instance_id,omitempty"`
	Host       string `json:"host,omitempty"`
	ClientID   string `json:"client_id,omitempty"`
	// Self is the instance answering.
	Self bool `json:"self"`
	// State is its pipeline's (StateOK, StatePaused, StateCircuitOpen, StateDegraded,
	// StateStarting, StateDown), "unknown" when it announced none (an older version, or
	// its announcement has not arrived yet); Paused is an operator's pause.
	State  string `json:"state"`
	Paused bool   `json:"paused"`
	// LastHeartbeat is when it last announced its state (every few seconds while it runs).
	LastHeartbeat time.Time        `json:"last_heartbeat,omitzero"`
	Partitions    []GroupPartition `json:"partitions"`
	Lag           int64            `json:"lag"` // over its partitions
}

// GroupPartition is one requests partition and the group's lag on it.
type GroupPartition struct {
	Partition int32 `json:"partition"`
	Committed int64 `json:"committed"` // -1 without a commit
	End       int64 `json:"end"`
	Lag       int64 `json:"lag"`
}

// DLQFollow is how far an instance's store has followed the group's DLQ topic.
type DLQFollow struct {
	Topic string `json:"topic"`
	// Behind counts DLQ records not read yet, -1 until known.
	Behind int64 `json:"behind"`
	// Stored, Skipped (no id: not shareable) and Applied (other instances' deletes and
	// replays) count since the instance started.
	Stored  int64 `json:"stored"`
	Skipped int64 `json:"skipped"`
	Applied int64 `json:"applied"`
}

// StateUnknown is a member's state when it announced none.
const StateUnknown = "unknown"

func (s *Server) handleGroup(c echo.Context) error {
	gr, ok := s.backend.(GroupReporter)
	if !ok {
		return fmt.Errorf("%w: no consumer group view", ErrUnsupported)
	}
	g, err := gr.Group(c.Request().Context())
	if err != nil {
		return err
	}
	if g.Members == nil {
		g.Members = []GroupMember{}
	}
	if g.Unassigned == nil {
		g.Unassigned = []GroupPartition{}
	}
	return c.JSON(http.StatusOK, g)
}
