"""Tests of the Jarvis host side: plugin loading, config, runner and commands."""
