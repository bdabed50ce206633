"""The Swarm launcher: session servers, jobs and services placed on a Docker Swarm cluster."""
