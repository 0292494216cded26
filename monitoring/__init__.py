"""Monitoring assets of the Helm chart: the Grafana dashboard generator (build_dashboard.py)."""
