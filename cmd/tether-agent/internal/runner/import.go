package runner

import (
	"context"
	"fmt"
	"io"
	"os/exec"

	"github.com/klauspost/compress/zstd"
)

// Import feeds an export stream into `nix-store --import`, decompressing it
// first when it is zstd: the deployer compresses closures that cross a slow
// link, and the node may have no zstd of its own. Decoding is streamed with
// one goroutine and a bounded window, so memory stays flat however large
// the closure.
func Import(ctx context.Context, in io.Reader, compressed bool, env []string, stdout, stderr io.Writer) error {
	src := in
	if compressed {
		dec, err := zstd.NewReader(in, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(64<<20))
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer dec.Close()
		src = dec
	}
	cmd := exec.CommandContext(ctx, "nix-store", "--import")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = stdout, stderr
	w, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	_, copyErr := io.Copy(w, src)
	w.Close()
	if err := cmd.Wait(); err != nil {
		return &CmdError{Argv: cmd.Args, Err: err}
	}
	if copyErr != nil {
		return fmt.Errorf("import: reading the stream: %w", copyErr)
	}
	return nil
}
