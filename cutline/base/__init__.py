"""The foundation every layer may use: settings, errors, storage, safe names, YAML data files."""
