package main

import (
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// completionFlag is the hidden flag urfave/cli's shell completion appends to a command line.
const completionFlag = "--generate-bash-completion"

// flagsFirst reorders a command line so that the flags of the command it names come before
// that command's arguments: "ferry user add alice -c ferry.toml" becomes "ferry user add
// -c ferry.toml -- alice". urfave/cli v2 (like Go's flag package) stops parsing flags at
// the first argument, so without this a flag after NAME or ID would be taken as one more
// argument. Every flag of the command, under each of its names, in any form (-c F, --config
// F, --config=F, -c=F) moves; a word after "--" stays an argument; a word that starts with
// "-" but names no flag of the command stays where it is, so that cli reports it.
func flagsFirst(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	tail := slices.Clone(args[1:])
	completing := tail[len(tail)-1] == completionFlag
	if completing {
		tail = tail[:len(tail)-1]
	}
	out := []string{args[0]}
	commands := app.Commands
	var cmd *cli.Command
	for len(tail) > 0 && len(commands) > 0 {
		next := findCommand(commands, tail[0])
		if next == nil {
			break
		}
		cmd, commands = next, next.Subcommands
		out, tail = append(out, tail[0]), tail[1:]
	}
	if cmd == nil || len(cmd.Subcommands) > 0 {
		// Not a leaf command: nothing of ours to reorder.
		return args
	}
	var flags, operands []string
	for i := 0; i < len(tail); i++ {
		word := tail[i]
		if word == "--" {
			operands = append(operands, tail[i+1:]...)
			break
		}
		name, hasValue, isFlag := flagWord(word)
		if !isFlag {
			operands = append(operands, word)
			continue
		}
		flags = append(flags, word)
		if f := findFlag(cmd.Flags, name); f != nil && takesValue(f) && !hasValue {
			if i+1 == len(tail) {
				// The value is missing: end with the flag, so that cli reports it (and
				// takes no "--" or argument for its value).
				out = append(out, flags...)
				if completing {
					out = append(out, completionFlag)
				}
				return out
			}
			i++
			flags = append(flags, tail[i])
		}
	}
	out = append(out, flags...)
	if completing {
		// cli completes nothing after "--": the operands go without it.
		return append(append(out, operands...), completionFlag)
	}
	if len(operands) > 0 {
		out = append(append(out, "--"), operands...)
	}
	return out
}

// flagWord splits "-name", "--name" and "--name=value" into the name and whether the word
// carries its value; "-" alone (standard input, by convention) is not a flag.
func flagWord(word string) (name string, hasValue, isFlag bool) {
	if len(word) < 2 || word[0] != '-' {
		return "", false, false
	}
	name = strings.TrimPrefix(strings.TrimPrefix(word, "-"), "-")
	name, _, hasValue = strings.Cut(name, "=")
	return name, hasValue, true
}

func findCommand(commands []*cli.Command, name string) *cli.Command {
	for _, c := range commands {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

func findFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

// takesValue reports whether f is followed by a value (every flag but a bool).
func takesValue(f cli.Flag) bool {
	if v, ok := f.(cli.DocGenerationFlag); ok {
		return v.TakesValue()
	}
	return true
}
