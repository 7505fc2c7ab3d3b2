package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
)

// SettingsEditor is a Backend whose settings an admin changes from the dashboard (PUT
// /api/v1/settings); the appliance's is one. Without it the API answers 501.
type SettingsEditor interface {
	// UpdateSettings checks changes (setting key: value as the config file takes it) as the
	// config file is checked, writes them to the config file and applies those that apply
	// without a restart. A refused change is a *SettingsError (nothing written or applied).
	UpdateSettings(ctx context.Context, changes map[string]string) (*SettingsUpdate, error)
}

// SettingsUpdate is what a settings change did.
type SettingsUpdate struct {
	File    string          `json:"file"`    // the config file written
	Applied []SettingChange `json:"applied"` // in effect now
	Restart []SettingChange `json:"restart"` // in the file; in effect after a restart
}

// SettingChange is one setting changed.
type SettingChange struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
	Live  bool   `json:"live"`
}

// SettingsError refuses a settings change, naming each setting at fault.
type SettingsError struct{ Problems []SettingProblem }

// SettingProblem is what is wrong with one setting's new value.
type SettingProblem struct {
	Key     string `json:"key"`
	Message string `json:"message"`
}

func (e *SettingsError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Message
		if !strings.HasPrefix(p.Message, p.Key) {
			msgs[i] = p.Key + ": " + p.Message
		}
	}
	return strings.Join(msgs, "; ")
}

func (e *SettingsError) Unwrap() error { return ErrInvalid }

// handleSettingsUpdate is PUT /api/v1/settings: {"key": value, ...}, a value as JSON (true,
// 64, "250ms", a list as an array or "a,b"). 400 with {"error", "problems": [{key,
// message}]} when a value is refused; 409 when the appliance has no config file to write.
func (s *Server) handleSettingsUpdate(c echo.Context) error {
	ed, ok := s.backend.(SettingsEditor)
	if !ok {
		return fmt.Errorf("settings cannot be changed here: %w", ErrUnsupported)
	}
	var raw map[string]json.RawMessage
	if err := decodeJSON(c, &raw); err != nil {
		return err
	}
	changes := make(map[string]string, len(raw))
	var problems []SettingProblem
	for k, v := range raw {
		text, err := settingText(v)
		if err != nil {
			problems = append(problems, SettingProblem{Key: k, Message: k + ": " + err.Error()})
			continue
		}
		changes[k] = text
	}
	if len(problems) > 0 {
		return s.settingsRefused(c, &SettingsError{Problems: problems})
	}
	res, err := ed.UpdateSettings(c.Request().Context(), changes)
	var se *SettingsError
	if errors.As(err, &se) {
		return s.settingsRefused(c, se)
	}
	if err != nil {
		return err
	}
	if n := len(res.Applied) + len(res.Restart); n > 0 {
		var parts []string
		for _, ch := range res.Applied {
			parts = append(parts, fmt.Sprintf("%s=%v (applied)", ch.Key, ch.Value))
		}
		for _, ch := range res.Restart {
			parts = append(parts, fmt.Sprintf("%s=%v (after restart)", ch.Key, ch.Value))
		}
		s.audit(c, "settings.update", strings.Join(parts, ", ")+" in "+res.File)
	}
	return c.JSON(http.StatusOK, res)
}

func (s *Server) settingsRefused(c echo.Context, se *SettingsError) error {
	sort.SliceStable(se.Problems, func(i, j int) bool { return se.Problems[i].Key < se.Problems[j].Key })
	return c.JSON(http.StatusBadRequest, map[string]any{"error": se.Error(), "problems": se.Problems})
}

// settingText is a JSON value as the config file's text: strings as they are, numbers and
// booleans as written, arrays of those joined with commas, null as empty.
func settingText(v json.RawMessage) (string, error) {
	var x any
	dec := json.NewDecoder(strings.NewReader(string(v)))
	dec.UseNumber()
	if err := dec.Decode(&x); err != nil {
		return "", err
	}
	scalar := func(x any) (string, bool) {
		switch y := x.(type) {
		case string:
			return y, true
		case json.Number:
			return y.String(), true
		case bool:
			return strconv.FormatBool(y), true
		case nil:
			return "", true
		}
		return "", false
	}
	if t, ok := scalar(x); ok {
		return t, nil
	}
	if list, ok := x.([]any); ok {
		parts := make([]string, len(list))
		for i, item := range list {
			t, ok := scalar(item)
			if !ok || item == nil {
				return "", errors.New("a list holds plain values")
			}
			parts[i] = t
		}
		return strings.Join(parts, ","), nil
	}
	return "", errors.New("expected a value, not an object")
}
