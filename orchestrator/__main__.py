from orchestrator.cli.app import main

# Guarded: worker processes (``gateway --workers``) re-import the main module under another name.
if __name__ == "__main__":
    main()
