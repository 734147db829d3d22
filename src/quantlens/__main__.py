from quantlens.cli import run

run()
