package haproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/portstripe/portstripe/artifact"
	"github.com/portstripe/portstripe/internal/safefile"
	"github.com/portstripe/portstripe/node"
)

// DefaultTimeout bounds one socket command when the caller's context has no
// deadline of its own.
const DefaultTimeout = 5 * time.Second

// maxAnswer bounds what one command may answer; "show stat" of a few
// hundred proxies is well under a megabyte.
const maxAnswer = 16 << 20

// Conn is one connection to a HAProxy CLI socket; *net.UnixConn is one.
type Conn interface {
	io.ReadWriteCloser
	// CloseWrite ends the command: the master CLI answers but keeps the
	// connection open until the client half-closes (seen on 2.6.12).
	CloseWrite() error
	SetDeadline(t time.Time) error
}

// Dialer connects to a CLI socket; tests use a fake that answers from
// recorded output.
type Dialer interface {
	Dial(ctx context.Context, path string) (Conn, error)
}

// UnixDialer dials unix sockets.
type UnixDialer struct{}

func (UnixDialer) Dial(ctx context.Context, path string) (Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

// socket sends one command per connection, in HAProxy's non-interactive
// mode: the command line, then read the answer until HAProxy closes.
type socket struct {
	path    string
	dialer  Dialer
	timeout time.Duration
}

func (s socket) command(ctx context.Context, cmd string) (string, error) {
	if _, ok := ctx.Deadline(); !ok {
		t := s.timeout
		if t <= 0 {
			t = DefaultTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	d := s.dialer
	if d == nil {
		d = UnixDialer{}
	}
	c, err := d.Dial(ctx, s.path)
	if err != nil {
		return "", fmt.Errorf("haproxy socket %s: %w", s.path, err)
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	if err := c.SetDeadline(deadline); err != nil {
		return "", fmt.Errorf("haproxy socket %s: %w", s.path, err)
	}
	// A deadline covers a stuck read; cancellation closes the connection.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", s.fail(ctx, cmd, err)
	}
	if err := c.CloseWrite(); err != nil {
		return "", s.fail(ctx, cmd, err)
	}
	b, err := io.ReadAll(io.LimitReader(c, maxAnswer+1))
	if err != nil {
		return "", s.fail(ctx, cmd, err)
	}
	if len(b) > maxAnswer {
		return "", fmt.Errorf("haproxy socket %s: %q: answer longer than %d bytes", s.path, cmd, maxAnswer)
	}
	return string(b), nil
}

func (s socket) fail(ctx context.Context, cmd string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = ctxErr
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		// The connection's deadline is the context's and may fire first.
		err = context.DeadlineExceeded
	}
	return fmt.Errorf("haproxy socket %s: %q: %w", s.path, cmd, err)
}

// cliNameRE is what may go into a command as a proxy or server name: the
// CLI splits commands on ';' and words on spaces.
var cliNameRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]+$`)

func checkNames(names ...string) error {
	for _, n := range names {
		if !cliNameRE.MatchString(n) {
			return fmt.Errorf("%q is not a HAProxy name (A-Z a-z 0-9 _ . : -)", n)
		}
	}
	return nil
}

// excerpt is what an error quotes of an answer: its first line, trimmed,
// control characters replaced and cut to 200 bytes, so a garbage or huge
// answer makes one short line, never a multi-line log or status entry.
func excerpt(answer string) string {
	l := oneLine(strings.TrimSpace(firstLine(strings.TrimSpace(answer))))
	if len(l) > 200 {
		l = strings.ToValidUTF8(l[:200], "") + "…"
	}
	return l
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// ErrCommand marks an answer in which HAProxy refused a command.
var ErrCommand = errors.New("haproxy refused the command")

// PrepareRunDir readies runDir, the directory portstripe owns for HAProxy,
// before a master starts or reloads: HAProxy removes and re-creates the
// socket files there, as root. runDir is created 0700 when missing; an
// existing one must be a directory (not a symlink) owned by root (the
// effective user) that no one else can write, so that nobody but root can
// plant a file for HAProxy to replace. Inside it, the workers' chroot
// (node.ChrootDir) is created 0755 and must stay empty. A socket path
// that exists must be a socket: anything else there is an error, never
// removed.
func PrepareRunDir(runDir string, sockets ...string) error {
	if err := ownedDir(runDir, 0o700); err != nil {
		return err
	}
	for _, s := range sockets {
		rel, err := filepath.Rel(runDir, s)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			return fmt.Errorf("haproxy socket %s is outside the run directory %s", s, runDir)
		}
		// Directories between runDir and the socket obey runDir's rules.
		dir := runDir
		for _, part := range strings.Split(filepath.Dir(rel), "/") {
			if part == "." {
				continue
			}
			dir = filepath.Join(dir, part)
			if err := ownedDir(dir, 0o700); err != nil {
				return err
			}
		}
		st, err := os.Lstat(s)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return fmt.Errorf("haproxy socket: %w", err)
		case st.Mode().Type() != fs.ModeSocket:
			return fmt.Errorf("haproxy socket %s exists and is not a socket (%s); portstripe never removes or replaces it: move it away, or name another socket path in the node file", s, safefile.Kind(st.Mode()))
		}
	}
	chroot := filepath.Join(runDir, node.ChrootDir)
	if err := ownedDir(chroot, 0o755); err != nil {
		return err
	}
	names, err := readDirNames(chroot)
	if err != nil {
		return fmt.Errorf("haproxy run directory: %w", err)
	}
	if len(names) > 0 {
		return fmt.Errorf("haproxy run directory: %s is the workers' chroot and must stay empty (holds %s)", chroot, strings.Join(names, ", "))
	}
	return nil
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(8)
	if err == io.EOF {
		err = nil
	}
	return names, err
}

// ownedDir is artifact.OwnedDir, its errors naming the run directory.
func ownedDir(dir string, mode fs.FileMode) error {
	if err := artifact.OwnedDir(dir, mode); err != nil {
		return fmt.Errorf("haproxy run directory: %w", err)
	}
	return nil
}
