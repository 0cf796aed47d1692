"""The Decoding Playground (placeholder until the app lands)."""

if __name__ == "__main__":
    raise SystemExit("the playground UI is not built yet; try: python -m model.generate --help")
