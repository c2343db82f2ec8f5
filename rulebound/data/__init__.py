"""Small datasets shipped with rulebound for the offline default (written for this repository)."""
