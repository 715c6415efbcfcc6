package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ferry-rtc/ferry/cluster"
)

func clusterCommand() *cli.Command {
	return &cli.Command{
		Name:  "cluster",
		Usage: "show the cluster that [cluster] redis coordinates",
		Subcommands: []*cli.Command{
			{
				Name: "status",
				Usage: "list the live nodes (addresses, load, draining) and the rooms with their owners, " +
					"read from Redis: it needs no node to be up",
				Flags: []cli.Flag{
					configFlag,
					&cli.StringFlag{Name: "redis", EnvVars: []string{"FERRY_CLUSTER_REDIS"},
						Usage: "the cluster's Redis `URL` (default: [cluster] redis of --config)"},
					&cli.BoolFlag{Name: "json", Usage: "print JSON: {\"nodes\": [...], \"rooms\": [...]}"},
					&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "give up after this long"},
				},
				Action: clusterStatus,
			},
		},
	}
}

func clusterStatus(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("%sunexpected argument %q", commandPrefix(c), c.Args().First())
	}
	url := c.String("redis")
	if url == "" {
		cfg, err := loadConfig(c)
		if err != nil {
			return err
		}
		if url = cfg.Cluster.Redis; url == "" {
			return cfg.Errorf("cluster.redis", "this node is in no cluster; set it, or pass --redis")
		}
	}
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	st, err := cluster.ReadStatus(ctx, url)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	return st.WriteTable(c.App.Writer)
}
