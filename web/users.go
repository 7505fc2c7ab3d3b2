package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/bcrypt"

	"github.com/infergate/infergate/store"
)

// Users and roles (issue 15). Three roles, each including the one before:
//
//   - viewer reads everything the API serves and changes nothing;
//   - operator also pauses and resumes the pipeline, replays and deletes DLQ records and sends
//     test requests: the line's day-to-day work;
//   - admin also uploads and labels models, reloads them, manages users and rotates the
//     admin token.
//
// Users live in the store (settings "users/<name>"), with bcrypt password hashes. A user may
// also hold API tokens for scripts, "igu_<id>_<secret>", of which the store keeps the SHA-256
// of the secret only. The bootstrap admin token (<data dir>/admin-token or
// INFERGATE_ADMIN_TOKEN) stays: it is how the first admin logs in and how the CLI on the box
// talks to the API, and acts with the admin role under the actor name "admin-token".

// Role is what a caller may do.
type Role string

const (
	RoleViewer   Role = "viewer"
	RoleOperator Role = "operator"
	RoleAdmin    Role = "admin"
)

// adminTokenActor is the audit log's name for the bootstrap admin token.
const adminTokenActor = "admin-token"

func (r Role) rank() int {
	switch r {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// includes reports whether r may do what need allows.
func (r Role) includes(need Role) bool { return r.rank() >= need.rank() && need.rank() > 0 }

func parseRole(s string) (Role, error) {
	r := Role(strings.TrimSpace(s))
	if r.rank() == 0 {
		return "", fmt.Errorf("unknown role %q: want viewer, operator or admin", s)
	}
	return r, nil
}

// principal is who made a request.
type principal struct {
	actor string // user name, or adminTokenActor
	role  Role
}

const (
	minPasswordLen = 10
	maxPasswordLen = 72 // bcrypt uses the first 72 bytes only; refuse more rather than ignore them
	bcryptCost     = 10 // ~50 ms per check on a 2-core edge box; the login limiter bounds guessing
	userTokenPref  = "igu_"
	usersSetting   = "users/"
	maxUserTokens  = 20
)

var userNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,31}$`)

type userRecord struct {
	Name         string      `json:"name"`
	Role         Role        `json:"role"`
	PasswordHash string      `json:"password_hash"`
	CreatedAt    time.Time   `json:"created_at"`
	Tokens       []userToken `json:"tokens,omitempty"`
}

type userToken struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Hash      string    `json:"hash"` // hex SHA-256 of the secret
	CreatedAt time.Time `json:"created_at"`
}

// userView is what the API shows of a user: never a hash.
type userView struct {
	Name      string      `json:"name"`
	Role      Role        `json:"role"`
	CreatedAt time.Time   `json:"created_at"`
	Tokens    []tokenView `json:"tokens"`
}

type tokenView struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

func (u *userRecord) view() userView {
	v := userView{Name: u.Name, Role: u.Role, CreatedAt: u.CreatedAt, Tokens: []tokenView{}}
	for _, t := range u.Tokens {
		v.Tokens = append(v.Tokens, tokenView{ID: t.ID, Name: t.Name, CreatedAt: t.CreatedAt})
	}
	return v
}

// users is the store's users, cached: there are few, and token checks happen per request.
type users struct {
	mu sync.Mutex
	st *store.Store
	m  map[string]*userRecord
}

func loadUsers(st *store.Store) (*users, error) {
	all, err := st.SettingsWithPrefix(usersSetting)
	if err != nil {
		return nil, err
	}
	u := &users{st: st, m: make(map[string]*userRecord, len(all))}
	for name, raw := range all {
		var rec userRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return nil, fmt.Errorf("user %s in the store: %w", name, err)
		}
		u.m[name] = &rec
	}
	return u, nil
}

func (u *users) saveLocked(rec *userRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return u.st.PutSetting(usersSetting+rec.Name, b)
}

func (u *users) list() []userView {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]userView, 0, len(u.m))
	for _, r := range u.m {
		out = append(out, r.view())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (u *users) get(name string) (userView, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	r, ok := u.m[name]
	if !ok {
		return userView{}, false
	}
	return r.view(), true
}

func checkPassword(p string) error {
	switch {
	case len(p) < minPasswordLen:
		return badRequest("password: at least %d characters are needed, got %d", minPasswordLen, len(p))
	case len(p) > maxPasswordLen:
		return badRequest("password: at most %d bytes, got %d", maxPasswordLen, len(p))
	}
	return nil
}

func (u *users) create(name string, role Role, password string, now time.Time) error {
	if !userNameRE.MatchString(name) || name == adminTokenActor {
		return badRequest("user name %q: use 1-32 of a-z 0-9 . _ - starting with a letter or digit (and not %q)", name, adminTokenActor)
	}
	if err := checkPassword(password); err != nil {
		return err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
	if err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.m[name]; ok {
		return apiErr(http.StatusConflict, "user %s already exists", name)
	}
	rec := &userRecord{Name: name, Role: role, PasswordHash: string(hash), CreatedAt: now.UTC()}
	if err := u.saveLocked(rec); err != nil {
		return err
	}
	u.m[name] = rec
	return nil
}

// update changes a user's role and/or password.
func (u *users) update(name string, role Role, password string) error {
	var hash []byte
	if password != "" {
		if err := checkPassword(password); err != nil {
			return err
		}
		var err error
		if hash, err = bcrypt.GenerateFromPassword([]byte(password), bcryptCost); err != nil {
			return err
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	old, ok := u.m[name]
	if !ok {
		return apiErr(http.StatusNotFound, "no user %s", name)
	}
	rec := *old
	if role != "" {
		rec.Role = role
	}
	if hash != nil {
		rec.PasswordHash = string(hash)
	}
	if err := u.saveLocked(&rec); err != nil {
		return err
	}
	u.m[name] = &rec
	return nil
}

func (u *users) delete(name string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.m[name]; !ok {
		return apiErr(http.StatusNotFound, "no user %s", name)
	}
	if err := u.st.DeleteSetting(usersSetting + name); err != nil {
		return err
	}
	delete(u.m, name)
	return nil
}

// login checks a user name and password. It always runs one bcrypt comparison, so the answer
// takes as long for a user that does not exist.
func (u *users) login(name, password string) (principal, bool) {
	u.mu.Lock()
	r, ok := u.m[name]
	var hash []byte
	var role Role
	if ok {
		hash, role = []byte(r.PasswordHash), r.Role
	}
	u.mu.Unlock()
	if !ok {
		hash = dummyHash()
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || !ok {
		return principal{}, false
	}
	return principal{actor: name, role: role}, true
}

var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("no such user, no such password"), bcryptCost)
	return h
})

func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// newToken adds an API token to a user and returns it; only its hash is kept.
func (u *users) newToken(name, label string, now time.Time) (string, tokenView, error) {
	if label == "" {
		label = "token"
	}
	if len(label) > 64 {
		return "", tokenView{}, badRequest("token name: at most 64 characters")
	}
	id := randomToken()[:12]
	id = strings.NewReplacer("-", "a", "_", "b").Replace(id)
	secret := randomToken()
	u.mu.Lock()
	defer u.mu.Unlock()
	old, ok := u.m[name]
	if !ok {
		return "", tokenView{}, apiErr(http.StatusNotFound, "no user %s", name)
	}
	if len(old.Tokens) >= maxUserTokens {
		return "", tokenView{}, apiErr(http.StatusConflict, "user %s has %d API tokens, the most allowed; delete one first", name, len(old.Tokens))
	}
	rec := *old
	t := userToken{ID: id, Name: label, Hash: hashSecret(secret), CreatedAt: now.UTC()}
	rec.Tokens = append(append([]userToken(nil), old.Tokens...), t)
	if err := u.saveLocked(&rec); err != nil {
		return "", tokenView{}, err
	}
	u.m[name] = &rec
	return userTokenPref + id + "_" + secret, tokenView{ID: id, Name: label, CreatedAt: t.CreatedAt}, nil
}

func (u *users) deleteToken(name, id string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	old, ok := u.m[name]
	if !ok {
		return apiErr(http.StatusNotFound, "no user %s", name)
	}
	rec := *old
	rec.Tokens = nil
	for _, t := range old.Tokens {
		if t.ID != id {
			rec.Tokens = append(rec.Tokens, t)
		}
	}
	if len(rec.Tokens) == len(old.Tokens) {
		return apiErr(http.StatusNotFound, "user %s has no token %s", name, id)
	}
	if err := u.saveLocked(&rec); err != nil {
		return err
	}
	u.m[name] = &rec
	return nil
}

// byToken finds the user holding an API token.
func (u *users) byToken(tok string) (principal, bool) {
	rest, ok := strings.CutPrefix(tok, userTokenPref)
	if !ok {
		return principal{}, false
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok {
		return principal{}, false
	}
	want := hashSecret(secret)
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, r := range u.m {
		for _, t := range r.Tokens {
			if t.ID == id && subtle.ConstantTimeCompare([]byte(t.Hash), []byte(want)) == 1 {
				return principal{actor: r.Name, role: r.Role}, true
			}
		}
	}
	return principal{}, false
}

// Handlers.

type userRequest struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Password string `json:"password"`
}

func (s *Server) handleUsersList(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"users": s.users.list()})
}

func (s *Server) handleUserCreate(c echo.Context) error {
	var req userRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	role, err := parseRole(req.Role)
	if err != nil {
		return badRequest("role: %v", err)
	}
	if err := s.users.create(req.Name, role, req.Password, s.now()); err != nil {
		return err
	}
	s.audit(c, "users.create", fmt.Sprintf("%s (%s)", req.Name, role))
	v, _ := s.users.get(req.Name)
	return c.JSON(http.StatusCreated, v)
}

// handleUserUpdate changes a user's role or password (admin). A role change ends the user's
// sessions, so a demoted user cannot keep acting with the old role.
func (s *Server) handleUserUpdate(c echo.Context) error {
	name := c.Param("name")
	var req userRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	var role Role
	if req.Role != "" {
		r, err := parseRole(req.Role)
		if err != nil {
			return badRequest("role: %v", err)
		}
		role = r
	}
	if role == "" && req.Password == "" {
		return badRequest("nothing to change: give role and/or password")
	}
	if err := s.users.update(name, role, req.Password); err != nil {
		return err
	}
	var what []string
	if role != "" {
		what = append(what, "role "+string(role))
		s.sessions.deleteActor(name)
	}
	if req.Password != "" {
		what = append(what, "password")
	}
	s.audit(c, "users.update", name+": "+strings.Join(what, ", "))
	v, _ := s.users.get(name)
	return c.JSON(http.StatusOK, v)
}

func (s *Server) handleUserDelete(c echo.Context) error {
	name := c.Param("name")
	if err := s.users.delete(name); err != nil {
		return err
	}
	s.sessions.deleteActor(name)
	s.audit(c, "users.delete", name)
	return c.NoContent(http.StatusNoContent)
}

// handleMe tells the dashboard who is logged in, with which role, and (for a user) the
// user's API tokens: the dashboard shows and hides its controls by it, and every user
// manages their own tokens and password from it. The API still checks every call.
func (s *Server) handleMe(c echo.Context) error {
	p := principalOf(c)
	via := authViaSession
	if sess, _ := c.Get(ctxSession).(*session); sess == nil {
		via = authViaBearer
	}
	out := map[string]any{"actor": p.actor, "role": p.role, "via": via,
		"admin_token": p.actor == adminTokenActor, "admin_token_rotatable": s.cfg.RotateAdminToken != nil}
	if u, ok := s.users.get(p.actor); ok && p.actor != adminTokenActor {
		out["user"] = u
	}
	return c.JSON(http.StatusOK, out)
}

// selfOrAdmin allows a user's own routes to that user and to admins.
func (s *Server) selfOrAdmin(c echo.Context) error {
	p := principalOf(c)
	if p.role == RoleAdmin || p.actor == c.Param("name") {
		return nil
	}
	return apiErr(http.StatusForbidden, "only %s or an admin may do this", c.Param("name"))
}

// handleUserPassword lets users change their own password (the old one is required unless an
// admin sets it).
func (s *Server) handleUserPassword(c echo.Context) error {
	if err := s.selfOrAdmin(c); err != nil {
		return err
	}
	name := c.Param("name")
	var req struct {
		Old string `json:"old_password"`
		New string `json:"new_password"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if p := principalOf(c); p.actor == name {
		if _, ok := s.users.login(name, req.Old); !ok {
			return apiErr(http.StatusForbidden, "old_password is wrong")
		}
	}
	if err := s.users.update(name, "", req.New); err != nil {
		return err
	}
	s.audit(c, "users.password", name)
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) handleUserTokenCreate(c echo.Context) error {
	if err := s.selfOrAdmin(c); err != nil {
		return err
	}
	name := c.Param("name")
	var req struct {
		Name string `json:"name"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	tok, v, err := s.users.newToken(name, req.Name, s.now())
	if err != nil {
		return err
	}
	s.audit(c, "users.token_create", fmt.Sprintf("%s token %s (%s)", name, v.ID, v.Name))
	return c.JSON(http.StatusCreated, map[string]any{"token": tok, "id": v.ID, "name": v.Name, "created_at": v.CreatedAt,
		"note": "shown once: only its hash is kept"})
}

func (s *Server) handleUserTokenDelete(c echo.Context) error {
	if err := s.selfOrAdmin(c); err != nil {
		return err
	}
	name, id := c.Param("name"), c.Param("id")
	if err := s.users.deleteToken(name, id); err != nil {
		return err
	}
	s.audit(c, "users.token_delete", name+" token "+id)
	return c.NoContent(http.StatusNoContent)
}

// handleRotateAdminToken replaces the bootstrap admin token (written to its file first, so a
// crash cannot leave the appliance on a token nobody has) and shows the new one once. Sessions
// opened with the old token end.
func (s *Server) handleRotateAdminToken(c echo.Context) error {
	if s.cfg.RotateAdminToken == nil {
		return apiErr(http.StatusConflict, "the admin token comes from http.admin_token or INFERGATE_ADMIN_TOKEN; change it there and restart")
	}
	tok, err := s.cfg.RotateAdminToken()
	if err != nil {
		return fmt.Errorf("rotating the admin token: %w", err)
	}
	s.setAdminToken(tok)
	s.sessions.deleteActor(adminTokenActor)
	s.audit(c, "admin_token.rotate", "the old admin token no longer works")
	return c.JSON(http.StatusOK, map[string]any{"token": tok, "note": "shown once; also in the admin-token file of the data dir"})
}
