package reconciler

// machineSpec is the release the machine's table test walks: every kind of
// stage, a manual approval and a pull-request approval.
const machineSpec = `apiVersion: sluice.dev/v1alpha1
kind: Release
metadata:
  name: shop
  namespace: web
spec:
  service: {name: shop, port: 80}
  versions:
    - {name: v1, source: apps/shop/v1}
    - {name: v2, source: apps/shop/v2}
  stable: v1
  candidate: v2
  routes:
    - {name: mesh, gateways: [mesh], hosts: [shop]}
  analysis:
    interval: 30s
    threshold: 2
    iterations: 1
    metrics:
      - name: request-success-rate
        thresholdRange: {min: 99}
  stages:
    - name: deploy
      deploy: {}
    - name: dark-launch
      darkLaunch:
        match:
          - headers: {x-cohort: {exact: internal}}
    - name: canary
      approval: manual
      weighted: {weights: [10, 20]}
    - name: wide
      approval: pullRequest
      weighted: {weights: [50]}
    - name: promote
      promote: {}
`
