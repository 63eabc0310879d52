package remote

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"time"
)

// Shell programs run by Upload. User data (paths, mode) only ever reaches
// them as positional parameters, quoted by Quote.
const (
	uploadReceive = `umask 077 && set -C && cat > "$1" && wc -c < "$1"`
	uploadCommit  = `chmod "$1" "$2" && mv -f "$2" "$3"`
)

// Upload streams r into the file at path on the node, with mode. The bytes go
// to a temporary file beside path; its size is checked against what was sent
// before it gets its mode and is renamed over path, so a cut connection never
// leaves a truncated file where a program expects a whole one. The
// temporary name is random and created exclusively (noclobber), so two
// uploads never write into one file. The parent directory must exist, and
// nobody the caller does not trust may write to it: whoever can rename
// entries there can swap the file after Upload returns.
func (c *Client) Upload(ctx context.Context, r io.Reader, path string, mode fs.FileMode) error {
	if err := c.upload(ctx, r, path, mode); err != nil {
		return fmt.Errorf("upload to %s:%s: %w", c.target.label(), path, err)
	}
	return nil
}

func (c *Client) upload(ctx context.Context, r io.Reader, path string, mode fs.FileMode) error {
	if path == "" || strings.HasSuffix(path, "/") {
		return errors.New("not a file path")
	}
	if err := CheckArgv([]string{path}); err != nil {
		return err
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := path + ".tether-tmp-" + hex.EncodeToString(rnd[:])

	counted := &countingReader{r: r}
	out, err := c.outputWith(ctx, counted, "sh", "-c", uploadReceive, "sh", tmp)
	if err == nil {
		var size int64
		size, err = strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		switch {
		case err != nil:
			err = fmt.Errorf("unexpected size report %q", out)
		case size != counted.n:
			err = fmt.Errorf("size mismatch: sent %d bytes, the node received %d", counted.n, size)
		}
	}
	if err == nil {
		perm := fmt.Sprintf("%04o", mode.Perm())
		_, err = c.Output(ctx, "sh", "-c", uploadCommit, "sh", perm, tmp, path)
	}
	if err != nil {
		c.removeQuietly(ctx, tmp)
		return err
	}
	return nil
}

func (c *Client) outputWith(ctx context.Context, stdin io.Reader, argv ...string) ([]byte, error) {
	var out strings.Builder
	err := c.Run(ctx, Cmd{Argv: argv, Stdin: stdin, Stdout: &out})
	return []byte(out.String()), err
}

// removeQuietly deletes a temporary file after a failed upload. It runs even
// when ctx was cancelled (that is when it is needed most), briefly.
func (c *Client) removeQuietly(ctx context.Context, path string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := c.Run(ctx, Cmd{Argv: []string{"rm", "-f", path}}); err != nil {
		c.dialer.logf("remove %s on %s: %v", path, c.target.label(), err)
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
