package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/ferry-rtc/ferry/server"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name: "serve",
		Usage: "run the STUN/TURN server and its SFU (SIGHUP reloads the config; SIGTERM or SIGINT drains, " +
			"a second one stops at once)",
		Flags:  []cli.Flag{configFlag},
		Action: serve,
	}
}

var errStoppedEarly = errors.New("stopped by a second signal before the drain finished")

func serve(c *cli.Context) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	log, level := server.NewLogger(os.Stderr, cfg.Log)
	// Signals are caught from the start: a SIGHUP during start-up must not kill the process.
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)

	srv, err := server.Start(server.Options{Config: cfg, Log: log, Level: level, Version: fullVersion(), Out: c.App.Writer, Procs: true})
	if err != nil {
		return err
	}
	stopped := runUntilStopped(srv, signals)
	_ = srv.Close()
	log.Info("ferry stopped")
	return stopped
}

// runUntilStopped serves until a stop signal has drained the server, reloading on SIGHUP. It returns
// errStoppedEarly if a second stop signal cut the drain short.
func runUntilStopped(srv *server.Server, signals <-chan os.Signal) error {
	for sig := range signals {
		if sig != syscall.SIGHUP {
			break
		}
		_, _ = srv.Reload() // the outcome is logged
	}
	ctx, stopNow := context.WithCancel(context.Background())
	defer stopNow()
	drained := make(chan bool, 1)
	go func() { drained <- srv.Drain(ctx) }()
	for {
		select {
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				_, _ = srv.Reload()
				continue
			}
			stopNow()
			<-drained
			return errStoppedEarly
		case <-drained:
			return nil
		}
	}
}
