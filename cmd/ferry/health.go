package main

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ferry-rtc/ferry/server"
)

func healthCommand() *cli.Command {
	return &cli.Command{
		Name: "health",
		Usage: "probe a running server's /healthz (or /readyz with --ready) on its metrics endpoint; " +
			"exit status 0 if it answers 200 (for container health checks: the image has no curl)",
		Flags: []cli.Flag{
			configFlag,
			&cli.StringFlag{Name: "addr", Usage: "metrics endpoint `ADDR` (default: [metrics] listen of --config)"},
			&cli.BoolFlag{Name: "ready", Usage: "probe /readyz: also fails while the server drains"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "give up after this long"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing when healthy"},
		},
		Action: health,
	}
}

func health(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("health: unexpected argument %q", c.Args().First())
	}
	addr := c.String("addr")
	if addr == "" {
		cfg, err := loadConfig(c)
		if err != nil {
			return err
		}
		if addr = cfg.Metrics.Listen; addr == "" {
			return cfg.Errorf("metrics.listen", "the metrics endpoint (/healthz) is off; set it, or pass --addr")
		}
	}
	path := "/healthz"
	if c.Bool("ready") {
		path = "/readyz"
	}
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	url, err := server.Probe(ctx, addr, path)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	if !c.Bool("quiet") {
		_, err = fmt.Fprintf(c.App.Writer, "%s: ok\n", url)
	}
	return err
}
